/**
 * The safetensors format: an 8-byte little-endian u64 header length N, N bytes of JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {str: str}}`, then the data
 * buffer. Offsets are relative to the data buffer, which the tensors must cover exactly, with no
 * gap or overlap. Reading parses only the header and reads each tensor on demand, so a multi-GB
 * checkpoint is never loaded whole.
 */
import { closeSync, fstatSync, openSync, statSync } from 'node:fs';
import { INPUT_LIMITS, readInputFile, statInput } from '../util/read-file.js';
import { basename, dirname, join } from 'node:path';
import { UserError } from '../errors.js';
import { writeFileAtomicStream } from '../util/atomic-write.js';
import { readFully } from '../util/spill-file.js';
import { DataType, byteLength, dtypeName, elementCount } from './dtype.js';

/** safetensors dtype name -> ONNX data type code */
const DTYPES: Record<string, number> = {
  F64: DataType.DOUBLE,
  F32: DataType.FLOAT,
  F16: DataType.FLOAT16,
  BF16: DataType.BFLOAT16,
  I64: DataType.INT64,
  I32: DataType.INT32,
  I16: DataType.INT16,
  I8: DataType.INT8,
  U64: DataType.UINT64,
  U32: DataType.UINT32,
  U16: DataType.UINT16,
  U8: DataType.UINT8,
  BOOL: DataType.BOOL,
};
const NAMES: Record<number, string> = Object.fromEntries(Object.entries(DTYPES).map(([k, v]) => [v, k]));

/** safetensors caps the header at 100 MB; a larger length field means a corrupt or foreign file. */
const MAX_HEADER = 100_000_000;

export interface SafetensorsEntry {
  name: string;
  /** safetensors dtype name, e.g. 'F32' */
  dtype: string;
  /** ONNX data type code */
  dataType: number;
  shape: number[];
  /** byte range within the data buffer */
  begin: number;
  end: number;
}

export interface SafetensorsFile {
  path: string;
  /** tensors in data-buffer order */
  tensors: ReadonlyMap<string, SafetensorsEntry>;
  metadata: Record<string, string>;
  /** file offset of the data buffer (8 + header length) */
  dataStart: number;
  /** the raw bytes of one tensor, read from disk now (a fresh, aligned buffer) */
  read(name: string): Uint8Array;
  close(): void;
}

export interface SafetensorsTensor {
  name: string;
  dataType: number;
  shape: readonly number[];
  /** the bytes, or a function that reads or computes them when the writer reaches this tensor */
  data: Uint8Array | (() => Uint8Array);
}

function readFileRange(fd: number, buf: Uint8Array, position: number, path: string): void {
  readFully(fd, buf, position, (read) => new UserError(`${path}: file ended early (read ${read} of ${buf.byteLength} bytes at offset ${position})`));
}

const oneLine = (s: string) => s.replace(/\s*[\r\n]+\s*/g, ' ');
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Parse and validate the header JSON against the data buffer length; entries come back in offset order. */
function parseHeader(path: string, text: string, dataLength: number): { entries: SafetensorsEntry[]; metadata: Record<string, string> } {
  const bad = (what: string) => new UserError(`${path}: invalid safetensors header: ${oneLine(what)}`);
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw bad(`not JSON (${(e as Error).message})`);
  }
  if (!isRecord(header)) throw bad(`expected a JSON object, found ${Array.isArray(header) ? 'an array' : String(header)}`);

  const metadata: Record<string, string> = {};
  const entries: SafetensorsEntry[] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isRecord(raw)) throw bad('__metadata__ must be an object of strings');
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== 'string') throw bad(`__metadata__.${k} must be a string, found ${typeof v}`);
        metadata[k] = v;
      }
      continue;
    }
    if (!isRecord(raw)) throw bad(`tensor '${name}' must be an object {dtype, shape, data_offsets}`);
    const { dtype, shape, data_offsets: offsets } = raw;
    if (typeof dtype !== 'string' || DTYPES[dtype] === undefined) {
      throw bad(`tensor '${name}' has unsupported dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(DTYPES).join(', ')})`);
    }
    if (!Array.isArray(shape) || !shape.every(isCount)) throw bad(`tensor '${name}' shape must be an array of non-negative integers`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
      throw bad(`tensor '${name}' data_offsets must be [begin, end] with 0 <= begin <= end`);
    }
    const dataType = DTYPES[dtype]!;
    const [begin, end] = offsets as [number, number];
    const need = byteLength(dataType, elementCount(shape));
    if (end - begin !== need) {
      throw bad(`tensor '${name}' spans ${end - begin} bytes but ${dtype} [${shape.join(', ')}] needs ${need}`);
    }
    if (end > dataLength) {
      throw bad(`tensor '${name}' data_offsets [${begin}, ${end}] run past the ${dataLength}-byte data buffer (file truncated?)`);
    }
    entries.push({ name, dtype, dataType, shape: shape as number[], begin, end });
  }

  // the tensors must tile the data buffer: no gap, no overlap, nothing after the last
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  let prev = '';
  for (const t of entries) {
    if (t.begin > at) throw bad(`${t.begin - at} unused bytes before tensor '${t.name}' (data_offsets must be contiguous)`);
    if (t.begin < at) throw bad(`tensor '${t.name}' overlaps tensor '${prev}'`);
    at = t.end;
    prev = t.name;
  }
  if (at !== dataLength) throw bad(`tensors cover ${at} bytes but the data buffer holds ${dataLength}`);
  return { entries, metadata };
}

/** Open a .safetensors file: read and validate its header, keep the file open for lazy tensor reads. */
export function openSafetensors(path: string): SafetensorsFile {
  let fd: number;
  try {
    const st = statSync(path);
    if (st.isDirectory()) throw new UserError(`${path}: is a directory, expected a .safetensors file`);
    // a FIFO or a device is refused before it is opened
    if (!st.isFile()) statInput(path, 'safetensors file');
    fd = openSync(path, 'r');
  } catch (e) {
    if (e instanceof UserError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(`${path}: cannot open safetensors file (${code === 'ENOENT' ? 'no such file' : (e as Error).message})`);
  }
  try {
    const size = fstatSync(fd).size;
    if (size < 8) throw new UserError(`${path}: ${size} bytes is too short for a safetensors file (expected an 8-byte header length)`);
    const lenBuf = new Uint8Array(8);
    readFileRange(fd, lenBuf, 0, path);
    const n = new DataView(lenBuf.buffer).getBigUint64(0, true);
    if (n > BigInt(size - 8)) {
      throw new UserError(`${path}: safetensors header length ${n} runs past the end of the ${size}-byte file (not a safetensors file, or truncated)`);
    }
    if (n > BigInt(MAX_HEADER)) throw new UserError(`${path}: safetensors header length ${n} exceeds the format's 100 MB limit`);
    const headerLength = Number(n);
    const headerBytes = new Uint8Array(headerLength);
    readFileRange(fd, headerBytes, 8, path);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
    } catch {
      throw new UserError(`${path}: invalid safetensors header: not UTF-8 JSON`);
    }
    const dataStart = 8 + headerLength;
    const { entries, metadata } = parseHeader(path, text, size - dataStart);
    const tensors = new Map(entries.map((t) => [t.name, t]));

    let open = true;
    return {
      path,
      tensors,
      metadata,
      dataStart,
      read(name: string): Uint8Array {
        const t = tensors.get(name);
        if (!t) throw new UserError(`${path}: no tensor named '${name}'`);
        if (!open) throw new Error(`${path}: read('${name}') after close()`);
        const buf = new Uint8Array(t.end - t.begin);
        readFileRange(fd, buf, dataStart + t.begin, path);
        return buf;
      },
      close(): void {
        if (open) closeSync(fd);
        open = false;
      },
    };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/**
 * Write tensors to a .safetensors file, atomically. Tensors are laid out in the order given and the
 * header lists them in that order, so callers should pass them sorted by name for byte-identical
 * output across runs. The header is padded with spaces to a multiple of 8 bytes, keeping the data
 * buffer 8-byte aligned. The header comes from dtypes and shapes alone; a tensor given as a function
 * is read when its turn comes, so the file is written one tensor at a time.
 */
export function writeSafetensors(path: string, tensors: readonly SafetensorsTensor[], metadata?: Record<string, string>): void {
  const fields: string[] = [];
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new Error(`writeSafetensors: metadata '${k}' must be a string`);
    }
    fields.push(`"__metadata__":${JSON.stringify(metadata)}`);
  }
  const seen = new Set<string>();
  let offset = 0;
  for (const t of tensors) {
    const dtype = NAMES[t.dataType];
    if (dtype === undefined) {
      const hint =
        t.dataType === DataType.INT4 || t.dataType === DataType.UINT4
          ? 'safetensors has no 4-bit dtype; pack it into a U8 tensor with your own layout and record that layout in metadata'
          : `supported: ${Object.keys(DTYPES).join(', ')}`;
      throw new UserError(`${path}: cannot store ${dtypeName(t.dataType)} tensor '${t.name}' in safetensors (${hint})`);
    }
    if (t.name === '__metadata__' || seen.has(t.name)) throw new Error(`writeSafetensors: duplicate or reserved tensor name '${t.name}'`);
    seen.add(t.name);
    const need = byteLength(t.dataType, elementCount(t.shape));
    if (typeof t.data !== 'function') checkLength(t, t.data, need);
    // hand-built so the header keeps the caller's order (a JS object would hoist integer-like names)
    fields.push(`${JSON.stringify(t.name)}:{"dtype":"${dtype}","shape":${JSON.stringify(t.shape)},"data_offsets":[${offset},${offset + need}]}`);
    offset += need;
  }
  let header = Buffer.from(`{${fields.join(',')}}`, 'utf8');
  const pad = (8 - (header.byteLength % 8)) % 8;
  if (pad) header = Buffer.concat([header, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.byteLength));
  writeFileAtomicStream(path, (write) => {
    write(len);
    write(header);
    for (const t of tensors) {
      const data = typeof t.data === 'function' ? checkLength(t, t.data(), byteLength(t.dataType, elementCount(t.shape))) : t.data;
      write(data);
    }
  });
}

function checkLength(t: SafetensorsTensor, data: Uint8Array, need: number): Uint8Array {
  if (data.byteLength !== need) throw new Error(`writeSafetensors: tensor '${t.name}' has ${data.byteLength} bytes, ${NAMES[t.dataType]} [${t.shape.join(', ')}] needs ${need}`);
  return data;
}

/** A checkpoint's config.json: where it is, its bytes as read (copied unchanged on write-back) and its values. */
export interface ConfigFile {
  path: string;
  bytes: Uint8Array;
  values: Record<string, unknown>;
}

/**
 * Read the Hugging Face `config.json` of a checkpoint: `dirOrPath` is its folder, a file inside it
 * (e.g. model.safetensors), or the config.json itself.
 */
export function readConfigJson(dirOrPath: string): Record<string, unknown> {
  return readConfigFile(dirOrPath).values;
}

/** `readConfigJson` with the file's path and bytes. */
export function readConfigFile(dirOrPath: string): ConfigFile {
  let file = dirOrPath;
  try {
    if (statSync(dirOrPath).isDirectory()) file = join(dirOrPath, 'config.json');
    else if (basename(dirOrPath) !== 'config.json') file = join(dirname(dirOrPath), 'config.json');
  } catch {
    if (basename(dirOrPath) !== 'config.json') file = join(dirname(dirOrPath), 'config.json');
  }
  try {
    statSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(
      `${file}: cannot read model config (${code === 'ENOENT' ? 'no such file' : (e as Error).message}); a safetensors checkpoint needs the Hugging Face config.json beside it`,
    );
  }
  const bytes = readInputFile(file, 'model config', { maxBytes: INPUT_LIMITS.json, fix: 'config.json is a short JSON file' });
  let config: unknown;
  try {
    config = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new UserError(`${file}: model config is not valid JSON (${oneLine((e as Error).message)})`);
  }
  if (!isRecord(config)) throw new UserError(`${file}: model config must be a JSON object`);
  return { path: file, bytes, values: config };
}
