import { resolve } from 'node:path';
import { sha256Bytes, sha256File } from '../util/hash.js';
import { familyOf, type BuildOptions, type ModelFamily } from './builders/index.js';
import { modelFileOf } from './hf-folder.js';
import { checkModelFile, formatOf, type CheckpointFormat } from './load.js';
import { Model } from './model.js';
import { readOnnxFile, writeOnnx } from './onnx-io.js';
import { openSafetensors, readConfigFile, type ConfigFile, type SafetensorsFile } from './safetensors.js';

/** What a safetensors checkpoint was built from, read once at open and kept for write-back. */
export interface SafetensorsSource {
  /** the weights file: header parsed, tensors read on demand */
  file: SafetensorsFile;
  /** config.json beside it */
  config: ConfigFile;
  family: ModelFamily;
}

/**
 * A checkpoint as a run uses it: loaded once, hashed once, closed once. `model` is the graph passes
 * may change in place; what the checkpoint was when opened stays available as its file (ONNX) or
 * its safetensors source (rebuilt on demand, tensors still on disk).
 */
export class Checkpoint {
  private hash: string | undefined;
  private onnxForm: string | undefined;
  private closed = false;

  private constructor(
    readonly path: string,
    readonly format: CheckpointFormat,
    readonly model: Model,
    /** present for safetensors checkpoints */
    readonly safetensors: SafetensorsSource | undefined,
    hash: string | undefined,
    /** how a safetensors checkpoint's graph is built (with or without the KV cache) */
    readonly buildOptions: BuildOptions = {},
  ) {
    this.hash = hash;
  }

  /**
   * Reads `path` (.onnx, .safetensors with config.json beside it, or a Hugging Face model folder:
   * its fp32 model). An ONNX file is validated (src/model/validate.ts) and hashed from the bytes it
   * was decoded from.
   */
  static open(modelPath: string, buildOptions: BuildOptions = {}): Checkpoint {
    const path = modelFileOf(modelPath);
    checkModelFile(path);
    if (formatOf(path) === 'onnx') {
      const { model, bytes } = readOnnxFile(path);
      return new Checkpoint(path, 'onnx', model, undefined, sha256Bytes(bytes));
    }
    // the weights file's own header first: a corrupt file is reported as such even without its config.json
    const file = openSafetensors(path);
    try {
      const config = readConfigFile(path);
      const source = { file, config, family: familyOf(config.values, config.path) };
      return new Checkpoint(path, 'safetensors', build(source, buildOptions), source, undefined, buildOptions);
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /** sha256 of the checkpoint file (a safetensors file is hashed the first time this is asked). */
  get sha256(): string {
    return (this.hash ??= sha256File(this.path));
  }

  /**
   * The files the checkpoint is read from: the model file, an ONNX model's external data files (as
   * opened, before any pass changes the graph) or a safetensors checkpoint's config.json.
   */
  files(): { path: string; role: 'model' | 'external data' | 'config' }[] {
    const files: { path: string; role: 'model' | 'external data' | 'config' }[] = [{ path: this.path, role: 'model' }];
    if (this.safetensors) return [...files, { path: this.safetensors.config.path, role: 'config' }];
    const seen = new Set<string>();
    for (const t of this.model.graph.initializer ?? []) {
      const location = t.data_location === 1 ? t.external_data?.find((e) => e.key === 'location')?.value : undefined;
      if (location === undefined) continue;
      const path = resolve(this.model.dir, location);
      if (!seen.has(path)) files.push({ path, role: 'external data' });
      seen.add(path);
    }
    return files;
  }

  /** config.json of a safetensors checkpoint */
  get config(): Record<string, unknown> | undefined {
    return this.safetensors?.config.values;
  }

  /**
   * The graph of a safetensors checkpoint as the builder makes it, whatever passes did to `model`
   * (cheap: tensors stay on disk). The caller closes it.
   */
  buildGraph(opts: BuildOptions = this.buildOptions): Model {
    if (!this.safetensors) throw new Error(`${this.path}: buildGraph() is for safetensors checkpoints; an ONNX checkpoint is its own graph`);
    return build(this.safetensors, opts);
  }

  /**
   * The checkpoint as opened, as an ONNX file ONNX Runtime can run: an ONNX checkpoint's own file;
   * a safetensors checkpoint's graph, built anew and written to `scratch()` the first time it is asked.
   */
  onnxPath(scratch: () => string): string {
    if (this.format === 'onnx') return this.path;
    if (this.onnxForm === undefined) {
      const path = scratch();
      const graph = this.buildGraph();
      try {
        writeOnnx(graph, path);
      } finally {
        graph.close();
      }
      this.onnxForm = path;
    }
    return this.onnxForm;
  }

  /** Closes the model and the safetensors file; later calls do nothing. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.model.close();
    this.safetensors?.file.close();
  }
}

function build(source: SafetensorsSource, opts: BuildOptions): Model {
  return source.family.build(source.file, source.config.values, source.config.path, opts);
}
