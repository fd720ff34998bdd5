import { readFileSync, statSync } from 'node:fs';
import { UserError } from '../errors.js';

/** Read a whole file, turning every filesystem failure into a one-line user error naming the file. */
export function readInputFile(path: string, what = 'file'): Buffer {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new UserError(`${path}: no such ${what}`);
  }
  if (st.isDirectory()) throw new UserError(`${path}: is a directory, expected a ${what}`);
  try {
    return readFileSync(path);
  } catch (e) {
    throw new UserError(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}
