import { z } from 'zod';

/**
 * A dataset spec: the same object appears in a recipe's `calibration.data` and `eval.data`
 * sections and is built from CLI flags. Relative paths resolve against the recipe's folder
 * (or the working directory on the command line).
 */

/** 1-based inclusive document ranges: "11-46", "1-10", "1,3,5-7". */
const Selection = z.string().regex(/^\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*$/, 'expected ranges like "1-10" or "1,3,5-7"');

export const TextSpec = z
  .object({
    kind: z.literal('text'),
    path: z.string(),
    /** documents are split on this string; empty documents are dropped */
    separator: z.string().default('<|endoftext|>'),
    /** llama2.c tokenizer.bin or a Hugging Face tokenizer.json */
    tokenizer: z.string(),
    select: Selection.optional(),
    bos: z.boolean().default(true),
    /** each document is evaluated on its own and truncated to this many tokens (BOS included) */
    max_length: z.number().int().min(2).default(512),
    /** documents longer than max_length are cut into windows starting every `stride` (< max_length) tokens instead of truncated; each token is scored once */
    stride: z.number().int().positive().optional(),
    /** calibration protocol: encode the documents, concatenate them and cut into segments of this many tokens */
    segment: z.number().int().min(2).optional(),
  })
  .strict();

export const TokensSpec = z
  .object({
    kind: z.literal('tokens'),
    path: z.string(),
    dtype: z.enum(['uint16', 'uint32']).default('uint16'),
    /** window length in tokens */
    seq_len: z.number().int().min(2),
    /** step between windows; defaults to seq_len (non-overlapping) */
    stride: z.number().int().positive().optional(),
    /** first token offset */
    offset: z.number().int().min(0).default(0),
    /** number of windows; all that fit by default */
    count: z.number().int().positive().optional(),
  })
  .strict();

/** raw labels files: little-endian integers of this type, one per sample */
export const LABEL_DTYPES = ['uint8', 'uint16', 'int32'] as const;
export type LabelDtype = (typeof LABEL_DTYPES)[number];

const Normalize = {
  /** pixel * scale, then (x - mean[c]) / std[c] */
  scale: z.number().default(1),
  mean: z.array(z.number()).optional(),
  std: z.array(z.number()).optional(),
  limit: z.number().int().positive().optional(),
};

export const IdxSpec = z
  .object({
    kind: z.literal('idx'),
    /** images file (idx3-ubyte, gzipped or not) */
    images: z.string(),
    /** labels file (idx1-ubyte, gzipped or not) */
    labels: z.string().optional(),
    ...Normalize,
  })
  .strict();

export const ImagesSpec = z
  .object({
    kind: z.literal('images'),
    /** raw uint8 pixels, N images back to back */
    path: z.string(),
    /** [H, W, C] for nhwc files, [C, H, W] for nchw files */
    shape: z.array(z.number().int().positive()).length(3),
    layout: z.enum(['nhwc', 'nchw']).default('nhwc'),
    /** one label per image: a .npy integer array, or raw little-endian integers of labels_dtype */
    labels: z.string().optional(),
    /** default uint8 */
    labels_dtype: z.enum(LABEL_DTYPES).optional(),
    ...Normalize,
  })
  .strict();

export const NpySpec = z
  .object({
    kind: z.literal('npy'),
    /** array whose first axis indexes samples */
    path: z.string(),
    /** one label per sample: an integer .npy array, or raw little-endian integers of labels_dtype */
    labels: z.string().optional(),
    /** default uint8 */
    labels_dtype: z.enum(LABEL_DTYPES).optional(),
    /** what a regression / image-to-image model should output: a float .npy with one entry per sample along the first axis */
    targets: z.string().optional(),
    layout: z.enum(['nhwc', 'nchw']).optional(),
    ...Normalize,
  })
  .strict();

export const IMAGE_PRESETS = ['imagenet', 'minus1to1', '0to1'] as const;

/** JPEG/PNG/WebP files in a folder, decoded, resized, cropped and normalised in that order (see image-transforms.ts). */
export const ImageFolderSpec = z
  .object({
    kind: z.literal('image-folder'),
    /** the folder; images in class sub-folders, or anywhere below it with labels from a CSV or the file names */
    path: z.string(),
    /** CSV of `file,label` rows (file relative to the folder; label a class name or an integer) */
    labels: z.string().optional(),
    /** default: csv when labels is set, folders when the folder has sub-folders, else none */
    label_from: z.enum(['folders', 'csv', 'filename', 'none']).optional(),
    /** label_from filename: a regex with one group that captures the class number; default the last number in the name */
    label_pattern: z.string().optional(),
    /** image-to-image: a folder with an image of the same relative name per input, read with color, layout and scale only (no resize, crop, mean or std) */
    targets: z.string().optional(),
    /** defaults for the fields below: imagenet (resize 256, crop 224, /255, ImageNet mean/std), minus1to1, 0to1 */
    preset: z.enum(IMAGE_PRESETS).optional(),
    /** channels and their order; gray is one channel (default rgb) */
    color: z.enum(['rgb', 'bgr', 'gray']).optional(),
    /** resize so the shorter side has this many pixels, keeping the aspect ratio */
    resize: z.number().int().positive().optional(),
    /** centre crop to this size (one number: square), after resize */
    crop: z.union([z.number().int().positive(), z.array(z.number().int().positive()).length(2)]).optional(),
    interpolation: z.enum(['bilinear', 'bicubic', 'nearest', 'lanczos3']).optional(),
    /** layout of the samples (default nchw); evaluation transposes to the model's input layout anyway */
    layout: z.enum(['nhwc', 'nchw']).optional(),
    /** pixel (0..255) * scale, then (x - mean[c]) / std[c]; default 1 or the preset's */
    scale: z.number().positive().optional(),
    mean: z.array(z.number()).optional(),
    std: z.array(z.number()).optional(),
    limit: z.number().int().positive().optional(),
  })
  .strict();

/** Seeded random samples, for fidelity-only runs (compressed against original) on models without data. */
export const RandomSpec = z
  .object({
    kind: z.literal('random'),
    /** per-sample shape, without the batch axis */
    shape: z.array(z.number().int().positive()).min(1),
    count: z.number().int().positive().default(16),
    /** uniform on [low, high), or normal(mean, std) */
    distribution: z.enum(['uniform', 'normal']).default('uniform'),
    low: z.number().default(0),
    high: z.number().default(1),
    mean: z.number().default(0),
    std: z.number().nonnegative().default(1),
    seed: z.number().int().min(0).default(0),
    /** the layout of `shape` when it is an image; evaluation transposes to the model's */
    layout: z.enum(['nhwc', 'nchw']).optional(),
  })
  .strict();

/** WAV clips in a folder (labels from class sub-folders), as log-mel or MFCC features (see audio-features.ts). */
export const WavFolderSpec = z
  .object({
    kind: z.literal('wav-folder'),
    path: z.string(),
    /** default: folders when the folder has sub-folders, else none */
    label_from: z.enum(['folders', 'filename', 'none']).optional(),
    label_pattern: z.string().optional(),
    /** clips at another rate are refused (no resampling) */
    sample_rate: z.number().int().positive().default(16000),
    /** every clip is cut or zero-padded to this many seconds */
    clip_seconds: z.number().positive().default(1),
    features: z.enum(['logmel', 'mfcc', 'waveform']).default('logmel'),
    /** FFT size, a power of two; also the window length */
    n_fft: z.number().int().min(2).default(512),
    hop: z.number().int().positive().default(160),
    window: z.enum(['hann', 'rect']).default('hann'),
    n_mels: z.number().int().positive().default(40),
    fmin: z.number().min(0).default(0),
    /** default sample_rate / 2 */
    fmax: z.number().positive().optional(),
    log_offset: z.number().positive().default(1e-6),
    n_mfcc: z.number().int().positive().default(13),
    limit: z.number().int().positive().optional(),
  })
  .strict();

export const DatasetSpec = z.discriminatedUnion('kind', [TextSpec, TokensSpec, IdxSpec, ImagesSpec, NpySpec, ImageFolderSpec, RandomSpec, WavFolderSpec]);
export type DatasetSpec = z.infer<typeof DatasetSpec>;
export type TextSpec = z.infer<typeof TextSpec>;
export type TokensSpec = z.infer<typeof TokensSpec>;
export type IdxSpec = z.infer<typeof IdxSpec>;
export type ImagesSpec = z.infer<typeof ImagesSpec>;
export type NpySpec = z.infer<typeof NpySpec>;
export type ImageFolderSpec = z.infer<typeof ImageFolderSpec>;
export type RandomSpec = z.infer<typeof RandomSpec>;
export type WavFolderSpec = z.infer<typeof WavFolderSpec>;
