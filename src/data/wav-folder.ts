import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { basename, join } from 'node:path';
import wavefile from 'wavefile';
import { UserError } from '../errors.js';
import { formatBytes, fsReadError, INPUT_LIMITS, readInputFile } from '../util/read-file.js';
import { audioFeatures, frameCount, melFilterbank, type FeatureParams } from './audio-features.js';
import { labelledImages } from './image-labels.js';
import type { WavFolderSpec } from './spec.js';
import type { TensorDataset } from './types.js';

/** A WAV file's samples as float in [−1, 1], channels averaged to mono, with its sample rate. */
export function readWav(bytes: Uint8Array, where: string): { samples: Float64Array; sampleRate: number } {
  let wav;
  try {
    wav = new wavefile.WaveFile(bytes);
    wav.toBitDepth('32f');
  } catch (e) {
    throw new UserError(`${where}: not a readable WAV file (${(e as Error).message})`);
  }
  const fmt = wav.fmt as { sampleRate: number; numChannels: number };
  const raw = wav.getSamples(false, Float64Array) as unknown as Float64Array | Float64Array[];
  const channels = fmt.numChannels > 1 ? (raw as Float64Array[]) : [raw as Float64Array];
  const samples = new Float64Array(channels[0]!.length);
  for (const c of channels) for (let i = 0; i < samples.length; i++) samples[i]! += c[i]! / channels.length;
  return { samples, sampleRate: fmt.sampleRate };
}

export function featureParams(spec: WavFolderSpec, where: string): FeatureParams {
  const fmax = spec.fmax ?? spec.sample_rate / 2;
  if ((spec.n_fft & (spec.n_fft - 1)) !== 0) throw new UserError(`${where}: n_fft ${spec.n_fft} is not a power of two (field n_fft)`);
  if (fmax > spec.sample_rate / 2 || spec.fmin >= fmax) throw new UserError(`${where}: fmin ${spec.fmin} and fmax ${fmax} must satisfy fmin < fmax ≤ sample_rate/2 (${spec.sample_rate / 2}) (field fmax)`);
  if (spec.features === 'mfcc' && spec.n_mfcc > spec.n_mels) throw new UserError(`${where}: n_mfcc ${spec.n_mfcc} is more than n_mels ${spec.n_mels} (field n_mfcc)`);
  return { sampleRate: spec.sample_rate, nFft: spec.n_fft, hop: spec.hop, window: spec.window, nMels: spec.n_mels, fmin: spec.fmin, fmax, logOffset: spec.log_offset, ...(spec.features === 'mfcc' ? { nMfcc: spec.n_mfcc } : {}) };
}

/** WAV clips, labelled by sub-folder or file name, cut or zero-padded to clip_seconds, as [frames, n_mels | n_mfcc] features or [samples] waveforms. */
export function loadWavFolder(spec: WavFolderSpec, dir: string): TensorDataset {
  let st;
  try {
    st = statSync(dir);
  } catch (e) {
    throw fsReadError(dir, 'audio folder', e, 'path');
  }
  if (!st.isDirectory()) throw new UserError(`${dir}: is a file, expected a folder of WAV files (field path)`);
  const p = featureParams(spec, dir);
  const listed = labelledImages(spec, dir, undefined, ['.wav'], 'WAV files');
  const total = listed.files.length;
  const count = Math.min(total, spec.limit ?? total);
  const clip = Math.round(spec.clip_seconds * spec.sample_rate);
  const frames = frameCount(clip, p);
  if (spec.features !== 'waveform' && frames === 0) throw new UserError(`${dir}: clips of ${clip} samples are shorter than n_fft ${spec.n_fft} (field clip_seconds)`);
  const sampleShape = spec.features === 'waveform' ? [clip] : [frames, p.nMfcc ?? p.nMels];
  const per = sampleShape.reduce((a, b) => a * b, 1);
  if (count * per * 4 > INPUT_LIMITS.samples) throw new UserError(`${dir}: ${count} clips of [${sampleShape.join('×')}] are more than pare holds (${formatBytes(INPUT_LIMITS.samples)} as float32); set limit`);
  const filters = melFilterbank(p);
  const data = new Float32Array(count * per);
  const hash = createHash('sha256');
  const signal = new Float64Array(clip);
  for (let i = 0; i < count; i++) {
    const f = listed.files[i]!;
    const bytes = readInputFile(join(dir, f), 'WAV file', { maxBytes: INPUT_LIMITS.samples, field: 'path' });
    hash.update(`${f}\0${createHash('sha256').update(bytes).digest('hex')}\n`);
    const wav = readWav(bytes, join(dir, f));
    if (wav.sampleRate !== spec.sample_rate) throw new UserError(`${join(dir, f)}: sampled at ${wav.sampleRate} Hz, sample_rate is ${spec.sample_rate} (field sample_rate); resample the clips or set sample_rate`);
    signal.fill(0);
    signal.set(wav.samples.subarray(0, clip));
    data.set(spec.features === 'waveform' ? signal : audioFeatures(signal, p, filters), i * per);
  }
  const what = spec.features === 'waveform' ? 'waveform' : `${spec.features === 'mfcc' ? `MFCC ${p.nMfcc} of ` : ''}log-mel ${p.nMels} (n_fft ${p.nFft}, hop ${p.hop}, ${p.window}, ${p.fmin}–${p.fmax} Hz, log offset ${p.logOffset})`;
  return {
    kind: 'tensors',
    sampleShape,
    data,
    count,
    ...(listed.labels ? { labels: listed.labels.subarray(0, count) } : {}),
    ...(listed.classes ? { classes: listed.classes } : {}),
    files: [{ path: dir, sha256: hash.digest('hex') }],
    description: `wav-folder ${basename(dir)}, ${count}${count < total ? ` of ${total}` : ''} clips of ${spec.clip_seconds} s at ${spec.sample_rate} Hz, ${listed.source}; ${what} → [${sampleShape.join('×')}]`,
  };
}
