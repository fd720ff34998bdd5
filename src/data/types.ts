/** What a loaded dataset hands to evaluation and calibration. */

export interface DatasetSource {
  /** files read, with their sha256, so a report pins exactly what was measured */
  files: { path: string; sha256: string }[];
  /** one line a person can read: "text valid-head.txt docs 11-46, tok512.bin, bos, max_length 512" */
  description: string;
  /** class names by index, when the data names its classes (image sub-folders, a CSV of names) */
  classes?: string[];
}

/** Token sequences for causal LMs; each already carries its BOS when the spec asks for one. */
export interface TokenDataset extends DatasetSource {
  kind: 'tokens';
  sequences: Int32Array[];
  /**
   * per sequence, the first position whose next-token prediction is scored (strided windows keep
   * earlier positions as context only); every position when absent
   */
  scoreFrom?: number[];
  /** vocabulary size of the tokenizer, when known; checked against the model's logits */
  vocabSize?: number;
  /** largest id in the data (token-id files have no tokenizer); must be below the model's vocabulary */
  maxTokenId?: number;
}

/** Fixed-shape float samples (images, arrays) with optional integer labels. */
export interface TensorDataset extends DatasetSource {
  kind: 'tensors';
  /** per-sample shape, without the batch axis */
  sampleShape: number[];
  /** layout of sampleShape when it is an image; evaluation transposes to the model's layout */
  layout?: 'nhwc' | 'nchw';
  /** all samples back to back, normalised, float32 */
  data: Float32Array;
  count: number;
  labels?: Int32Array;
  /** what a regression or image-to-image model should output, per sample, back to back */
  targets?: { data: Float32Array; sampleShape: number[] };
}

export type Dataset = TokenDataset | TensorDataset;

/** How far a dataset load has come: documents encoded and their text bytes, of those it will encode at most. */
export interface LoadProgress {
  documents: number;
  totalDocuments: number;
  bytes: number;
  totalBytes: number;
}

export interface LoadOptions {
  /**
   * stop once this many sequences exist (calibration reads only the first `samples`); they are the
   * same first sequences a full load gives
   */
  sequences?: number;
  /** called about once a second while a load takes longer than a second */
  onProgress?: (p: LoadProgress) => void;
  /** clock in milliseconds for the progress timing (tests pass their own) */
  now?: () => number;
}
