import { UserError } from '../errors.js';
import { normText } from './images.js';
import type { ImageFolderSpec } from './spec.js';

/** The concrete preprocessing of an image folder: the spec's fields over its preset's over the defaults. */
export interface ImageTransforms {
  preset?: ImageFolderSpec['preset'];
  color: 'rgb' | 'bgr' | 'gray';
  resize?: number;
  /** [height, width] */
  crop?: [number, number];
  interpolation: 'bilinear' | 'bicubic' | 'nearest' | 'lanczos3';
  layout: 'nhwc' | 'nchw';
  scale: number;
  mean?: number[];
  std?: number[];
}

type PresetFields = Omit<Partial<ImageTransforms>, 'preset'>;

/**
 * torchvision's ImageNet evaluation transform (Resize(256), CenterCrop(224), ToTensor, Normalize);
 * minus1to1 is x/127.5 − 1 (Inception, MobileNet from TF); 0to1 is x/255.
 */
export const PRESETS: Record<NonNullable<ImageFolderSpec['preset']>, PresetFields> = {
  imagenet: { color: 'rgb', resize: 256, crop: [224, 224], scale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
  minus1to1: { scale: 1 / 127.5, mean: [1], std: [1] },
  '0to1': { scale: 1 / 255 },
};

export function imageTransforms(spec: ImageFolderSpec, where: string): ImageTransforms {
  const p: PresetFields = spec.preset ? PRESETS[spec.preset] : {};
  const crop = spec.crop === undefined ? p.crop : typeof spec.crop === 'number' ? ([spec.crop, spec.crop] as [number, number]) : (spec.crop as [number, number]);
  const t: ImageTransforms = {
    preset: spec.preset,
    color: spec.color ?? p.color ?? 'rgb',
    resize: spec.resize ?? p.resize,
    crop,
    interpolation: spec.interpolation ?? 'bilinear',
    layout: spec.layout ?? 'nchw',
    scale: spec.scale ?? p.scale ?? 1,
    mean: spec.mean ?? p.mean,
    std: spec.std ?? p.std,
  };
  // a 3-channel mean/std on gray images is a preset meant for colour models
  const channels = t.color === 'gray' ? 1 : 3;
  for (const field of ['mean', 'std'] as const) {
    const v = t[field];
    if (v && v.length !== 1 && v.length !== channels) {
      const from = spec[field] ? '' : ` (from preset ${spec.preset})`;
      throw new UserError(`${where}: ${field} has ${v.length} values${from} for ${channels}-channel ${t.color} images (field ${field}); give ${channels === 1 ? 'one value' : `1 or ${channels} values`} or set color`);
    }
  }
  return t;
}

/** "gray, bilinear resize 256, centre crop 224×224, nchw, scale 0.00392157, mean [..], std [..]": every step, in order. */
export function transformsText(t: ImageTransforms): string {
  const steps = [t.preset ? `preset ${t.preset}: ${t.color}` : t.color];
  if (t.resize) steps.push(`${t.interpolation} resize shorter side to ${t.resize}`);
  if (t.crop) steps.push(`centre crop ${t.crop[0]}×${t.crop[1]}`);
  steps.push(t.layout);
  return steps.join(', ') + normText(t);
}
