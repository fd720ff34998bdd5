import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import wavefile from 'wavefile';
import { afterAll, describe, expect, it } from 'vitest';
import { audioFeatures, fft, hzToMel, melFilterbank, melToHz, type FeatureParams } from '../../src/data/audio-features.js';
import { datasetSpecFromCli } from '../../src/data/cli-spec.js';
import { loadDataset } from '../../src/data/load.js';
import { WavFolderSpec } from '../../src/data/spec.js';
import type { TensorDataset } from '../../src/data/types.js';
import { UserError } from '../../src/errors.js';
import { tempDir } from '../helpers.js';
import { rng } from '../reference/random.js';

const tmp = tempDir('pare-wav-');
afterAll(() => tmp.cleanup());

const P: FeatureParams = { sampleRate: 16000, nFft: 512, hop: 160, window: 'hann', nMels: 40, fmin: 0, fmax: 8000, logOffset: 1e-6 };
/** 16-bit PCM as wavefile reads it back: q/32767 above zero, q/32768 below */
const pcm16 = (x: Float64Array) => x.map((v) => {
  const q = Math.round(v * 32767);
  return q < 0 ? q / 32768 : q / 32767;
});
const tone = (hz: number, n: number, rate = 16000) => Float64Array.from({ length: n }, (_, i) => 0.5 * Math.sin((2 * Math.PI * hz * i) / rate));

/** A seeded test clip written as 16-bit PCM WAV (channels interleaved when more than one). */
function writeWav(path: string, channels: Float64Array[], rate = 16000): void {
  const w = new wavefile.WaveFile();
  const pcm = (c: Float64Array) => Array.from(c, (v) => Math.round(Math.max(-1, Math.min(1, v)) * 32767));
  w.fromScratch(channels.length, rate, '16', channels.length === 1 ? pcm(channels[0]!) : channels.map(pcm));
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, w.toBuffer());
}

describe('log-mel and MFCC features', () => {
  it('the FFT power spectrum equals a direct float64 DFT (|Δ| ≤ 1e-9 relative)', () => {
    const r = rng(2);
    const x = Float64Array.from({ length: 64 }, () => r() - 0.5);
    const re = Float64Array.from(x);
    const im = new Float64Array(64);
    fft(re, im);
    for (let k = 0; k < 64; k++) {
      let dr = 0;
      let di = 0;
      for (let n = 0; n < 64; n++) {
        dr += x[n]! * Math.cos((2 * Math.PI * k * n) / 64);
        di -= x[n]! * Math.sin((2 * Math.PI * k * n) / 64);
      }
      expect(Math.abs(re[k]! - dr) + Math.abs(im[k]! - di)).toBeLessThan(1e-9 * (1 + Math.hypot(dr, di)));
    }
  });

  it('a pure tone lands in the mel filter whose centre is nearest its frequency', () => {
    const filters = melFilterbank(P);
    const centres = Array.from({ length: P.nMels }, (_, m) => melToHz(hzToMel(P.fmin) + ((hzToMel(P.fmax) - hzToMel(P.fmin)) * (m + 1)) / (P.nMels + 1)));
    for (const hz of [440, 1000, 3000]) {
      const feats = audioFeatures(tone(hz, 16000), P, filters);
      const frames = feats.length / P.nMels;
      const mean = Array.from({ length: P.nMels }, (_, m) => {
        let s = 0;
        for (let f = 0; f < frames; f++) s += feats[f * P.nMels + m]!;
        return s / frames;
      });
      const nearest = centres.reduce((best, c, m) => (Math.abs(c - hz) < Math.abs(centres[best]! - hz) ? m : best), 0);
      expect(mean.indexOf(Math.max(...mean)), `${hz} Hz`).toBe(nearest);
    }
  });

  it('MFCC equals a direct orthonormal DCT-II of the log-mels, computed here', () => {
    const r = rng(9);
    const x = Float64Array.from({ length: 4000 }, (_, i) => 0.3 * Math.sin(i * (0.05 + i * 1e-5)) + 0.05 * (r() - 0.5));
    const logMel = audioFeatures(x, P);
    const mfcc = audioFeatures(x, { ...P, nMfcc: 13 });
    const frames = logMel.length / P.nMels;
    expect(mfcc.length).toBe(frames * 13);
    const N = P.nMels;
    for (let f = 0; f < frames; f++) {
      for (let k = 0; k < 13; k++) {
        let s = 0;
        for (let n = 0; n < N; n++) s += logMel[f * N + n]! * Math.cos((Math.PI * k * (n + 0.5)) / N);
        const want = s * (k === 0 ? Math.sqrt(1 / N) : Math.sqrt(2 / N));
        expect(Math.abs(mfcc[f * 13 + k]! - want)).toBeLessThan(1e-9 * (1 + Math.abs(want)));
      }
    }
  });
});

describe('wav-folder datasets', () => {
  const dir = join(tmp.dir, 'sounds');
  const r = rng(4);
  writeWav(join(dir, 'high', 'a.wav'), [tone(3000, 16000)]);
  writeWav(join(dir, 'low', 'b.wav'), [tone(300, 12000)]); // shorter: zero-padded to 1 s
  writeWav(join(dir, 'noise', 'c.wav'), [Float64Array.from({ length: 20000 }, () => 0.2 * (r() - 0.5))]); // longer: cut
  writeWav(join(dir, 'low', 'stereo.wav'), [tone(300, 16000), tone(300, 16000)]);
  const load = async (spec: Record<string, unknown>) => (await loadDataset(WavFolderSpec.parse({ kind: 'wav-folder', path: dir, ...spec }), tmp.dir)) as TensorDataset;

  it('clips labelled by sub-folder become [frames, n_mels] log-mels of the PCM samples', async () => {
    const ds = await load({});
    expect(ds.classes).toEqual(['high', 'low', 'noise']);
    expect(Array.from(ds.labels!)).toEqual([0, 1, 2, 1]);
    const frames = 1 + Math.floor((16000 - 512) / 160);
    expect(ds.sampleShape).toEqual([frames, 40]);
    // the first clip is the 3000 Hz tone as 16-bit PCM reads it back
    const pcm = pcm16(tone(3000, 16000));
    const want = audioFeatures(pcm, P);
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(ds.data[i]! - want[i]!) / (1 + Math.abs(want[i]!)));
    expect(worst).toBeLessThan(1e-4); // wavefile's 32f samples and float32 storage; measured ~1e-6
    expect(ds.description).toBe(`wav-folder sounds, 4 clips of 1 s at 16000 Hz, labels from 3 sub-folders; log-mel 40 (n_fft 512, hop 160, hann, 0–8000 Hz, log offset 0.000001) → [${frames}×40]`);
    // stereo of two equal channels is the mono clip
    const mono = audioFeatures(pcm16(tone(300, 16000)), P);
    for (let i = 0; i < mono.length; i++) expect(Math.abs(ds.data[3 * frames * 40 + i]! - mono[i]!)).toBeLessThan(1e-4 * (1 + Math.abs(mono[i]!)));
  });

  it('MFCC and waveform features; a clip at another sample rate and bad parameters are user errors naming the field', async () => {
    expect((await load({ features: 'mfcc', n_mfcc: 10 })).sampleShape).toEqual([97, 10]);
    expect((await load({ features: 'waveform', clip_seconds: 0.5 })).sampleShape).toEqual([8000]);
    await expect(load({ sample_rate: 8000 })).rejects.toThrow(UserError);
    await expect(load({ sample_rate: 8000 })).rejects.toThrow(/a\.wav: sampled at 16000 Hz, sample_rate is 8000 \(field sample_rate\)/);
    await expect(load({ n_fft: 500 })).rejects.toThrow(/n_fft 500 is not a power of two \(field n_fft\)/);
    await expect(load({ fmax: 9000 })).rejects.toThrow(/\(field fmax\)/);
  });

  it('a folder holding only WAV files is a wav-folder on the command line, with --features', () => {
    expect(datasetSpecFromCli(dir, { features: 'mfcc', labelFrom: 'folders' }, tmp.dir).spec).toMatchObject({ kind: 'wav-folder', path: dir, features: 'mfcc', label_from: 'folders', n_mels: 40 });
    expect(() => datasetSpecFromCli(dir, { color: 'gray' }, tmp.dir)).toThrow(/--color apply to images; this folder holds WAV files/);
  });
});
