/**
 * src/data — layer 4 (above linalg): datasets and tokenizers; no models, no runtimes.
 */
import { isAbsolute, join, resolve } from 'node:path';
import { IMAGE_EXTENSIONS, listFiles } from './image-labels.js';
import { loadIdx } from './idx.js';
import { loadImageFolder } from './image-folder.js';
import { loadNpy } from './npy-dataset.js';
import { loadRandom } from './random.js';
import { loadWavFolder } from './wav-folder.js';
import { loadRawImages } from './raw-images.js';
import type { DatasetSpec } from './spec.js';
import { loadText } from './text.js';
import { loadTokenFile } from './token-file.js';
import type { Dataset, LoadOptions, LoadProgress } from './types.js';

/**
 * Load the dataset a spec describes; relative paths resolve against `baseDir` (the recipe's or spec
 * file's folder). Text is tokenized document by document, only as far as `opts.sequences` needs.
 */
export async function loadDataset(spec: DatasetSpec, baseDir: string, opts: LoadOptions = {}): Promise<Dataset> {
  const at = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  switch (spec.kind) {
    case 'text':
      return loadText(spec, at(spec.path), at(spec.tokenizer), opts);
    case 'tokens':
      return loadTokenFile(spec, at(spec.path));
    case 'idx':
      return loadIdx(spec, at(spec.images), spec.labels ? at(spec.labels) : undefined);
    case 'images':
      return loadRawImages(spec, at(spec.path), spec.labels ? at(spec.labels) : undefined);
    case 'npy':
      return loadNpy(spec, at(spec.path), spec.labels ? at(spec.labels) : undefined, spec.targets ? at(spec.targets) : undefined);
    case 'image-folder':
      return loadImageFolder(spec, at(spec.path), spec.labels ? at(spec.labels) : undefined, spec.targets ? at(spec.targets) : undefined);
    case 'random':
      return loadRandom(spec);
    case 'wav-folder':
      return loadWavFolder(spec, at(spec.path));
  }
}

/** The files a spec reads, resolved as loadDataset resolves them. */
export function datasetFiles(spec: DatasetSpec, baseDir: string): string[] {
  const at = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  switch (spec.kind) {
    case 'text':
      return [at(spec.path), at(spec.tokenizer)];
    case 'tokens':
      return [at(spec.path)];
    case 'idx':
      return [at(spec.images), ...(spec.labels ? [at(spec.labels)] : [])];
    case 'npy':
      return [at(spec.path), ...(spec.labels ? [at(spec.labels)] : []), ...(spec.targets ? [at(spec.targets)] : [])];
    case 'images':
      return [at(spec.path), ...(spec.labels ? [at(spec.labels)] : [])];
    // a folder's files, each (a sweep hashes what it reads)
    case 'image-folder':
      return [...listFiles(at(spec.path), IMAGE_EXTENSIONS).map((f) => join(at(spec.path), f)), ...(spec.labels ? [at(spec.labels)] : []), ...(spec.targets ? listFiles(at(spec.targets), IMAGE_EXTENSIONS).map((f) => join(at(spec.targets!), f)) : [])];
    case 'random':
      return [];
    case 'wav-folder':
      return listFiles(at(spec.path), ['.wav']).map((f) => join(at(spec.path), f));
  }
}

/** "120/2000 documents, 35% of 1.3 MB" */
export function loadProgressText(p: LoadProgress): string {
  const mb = (p.totalBytes / 1e6).toFixed(1);
  return `${p.documents}/${p.totalDocuments} documents, ${Math.floor((100 * p.bytes) / Math.max(p.totalBytes, 1))}% of ${mb} MB`;
}
