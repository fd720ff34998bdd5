import { isAbsolute, resolve } from 'node:path';
import { loadIdx } from './idx.js';
import { loadNpy } from './npy.js';
import { loadRawImages } from './raw-images.js';
import type { DatasetSpec } from './spec.js';
import { loadText } from './text.js';
import { loadTokenFile } from './token-file.js';
import type { Dataset } from './types.js';

/** Load the dataset a spec describes; relative paths resolve against `baseDir` (the recipe's or spec file's folder). */
export async function loadDataset(spec: DatasetSpec, baseDir: string): Promise<Dataset> {
  const at = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  switch (spec.kind) {
    case 'text':
      return loadText(spec, at(spec.path), at(spec.tokenizer));
    case 'tokens':
      return loadTokenFile(spec, at(spec.path));
    case 'idx':
      return loadIdx(spec, at(spec.images), spec.labels ? at(spec.labels) : undefined);
    case 'images':
      return loadRawImages(spec, at(spec.path), spec.labels ? at(spec.labels) : undefined);
    case 'npy':
      return loadNpy(spec, at(spec.path), spec.labels ? at(spec.labels) : undefined);
  }
}
