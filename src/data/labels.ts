import { UserError } from '../errors.js';
import { readInputRange, statInput } from '../util/read-file.js';
import { checkLabels } from './images.js';
import { readNpy } from './npy.js';
import { LABEL_DTYPES, type LabelDtype } from './spec.js';

const WIDTH: Record<LabelDtype, number> = { uint8: 1, uint16: 2, int32: 4 };

/**
 * One class index per sample from a labels file: a .npy file (recognised by its magic bytes, whatever
 * its name) is read as a 1-D integer array; anything else is raw little-endian integers of `dtype`,
 * so a file of 1000 ImageNet classes can be uint16 or int32 instead of wrapping mod 256.
 * Returns the first `count` of the `total` labels the file must hold.
 */
export function readLabelFile(path: string, total: number, count: number, dtype: LabelDtype, samplesPath: string, noun = 'images'): Int32Array {
  const size = statInput(path, 'labels file', 'labels').size;
  const magic = size >= 6 ? readInputRange(path, 'labels file', 0, 6, 'labels').toString('latin1') : '';
  if (magic === '\x93NUMPY') {
    const l = readNpy(path, 'labels file', 'labels');
    if (!l.integer || l.shape.length !== 1) throw new UserError(`${path}: labels: expected a 1-D integer array, found ${l.integer ? '' : 'float '}shape (${l.shape.join(', ')})`);
    checkLabels(l.values, total, path, samplesPath, noun);
    return Int32Array.from(l.values.subarray(0, count));
  }
  const width = WIDTH[dtype];
  if (size !== total * width) {
    // a file of another width per sample most likely names the wrong labels_dtype
    const fits = LABEL_DTYPES.find((d) => d !== dtype && size === total * WIDTH[d]);
    const hint = fits ? `; the file holds ${WIDTH[fits]} bytes per ${noun.replace(/s$/, '')}: set labels_dtype: ${fits}` : '';
    throw new UserError(`${path}: labels: ${size / width} ${dtype} labels for ${total} ${noun} in ${samplesPath}${hint}`);
  }
  const bytes = readInputRange(path, 'labels file', 0, count * width, 'labels');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) labels[i] = dtype === 'uint8' ? view.getUint8(i) : dtype === 'uint16' ? view.getUint16(2 * i, true) : view.getInt32(4 * i, true);
  checkLabels(labels, count, path, samplesPath, noun);
  return labels;
}
