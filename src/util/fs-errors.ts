import { UserError } from '../errors.js';

/**
 * Filesystem failures the environment causes (a full disk, a read-only mount, a folder without
 * permission…) are the user's to fix, so each becomes a one-line UserError naming the path, what
 * went wrong and what to do. Codes not listed here (EBADF, EINVAL…) point at a bug and stay errors.
 */
const CAUSES: Record<string, { why: string; fix: string }> = {
  ENOSPC: { why: 'no space left on the device', fix: 'free space on that disk or write elsewhere' },
  EDQUOT: { why: 'disk quota exceeded', fix: 'free space within your quota or write elsewhere' },
  EFBIG: { why: 'file too large for the filesystem', fix: 'write to a filesystem that allows larger files' },
  EROFS: { why: 'read-only filesystem', fix: 'write to a writable folder' },
  EACCES: { why: 'permission denied', fix: "check the folder's permissions or write elsewhere" },
  EPERM: { why: 'operation not permitted', fix: "check the file's permissions and attributes or write elsewhere" },
  EISDIR: { why: 'is a directory', fix: 'name a file, not a folder' },
  ENOTDIR: { why: 'a part of the path is a file, not a folder', fix: 'fix the path' },
  ENOENT: { why: 'no such file or folder', fix: 'check the path' },
  EEXIST: { why: 'already exists', fix: 'remove it or choose another path' },
  ELOOP: { why: 'too many levels of symbolic links (a symlink loop)', fix: 'fix the link' },
  ENAMETOOLONG: { why: 'name too long', fix: 'choose a shorter path' },
  EMFILE: { why: 'too many open files in this process', fix: 'raise the limit (ulimit -n) and run again' },
  ENFILE: { why: 'too many open files on the system', fix: 'close other programs or raise the system limit and run again' },
  EIO: { why: 'input/output error from the device', fix: 'check the disk (dmesg) and run again' },
  EXDEV: { why: 'crosses filesystems', fix: 'keep the output and its folder on one filesystem' },
  EBUSY: { why: 'device or resource busy', fix: 'wait for the other program to finish or choose another path' },
  ETXTBSY: { why: 'file busy', fix: 'wait for the other program to finish or choose another path' },
};

export function errnoOf(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Whether `e` is a filesystem failure the user can fix (see CAUSES). */
export function isEnvironmentFsError(e: unknown): e is NodeJS.ErrnoException {
  const code = errnoOf(e);
  return code !== undefined && Object.hasOwn(CAUSES, code);
}

/** `path: cannot <doing>: <why> (<CODE>); <fix>` */
export function fsErrorMessage(code: string, path: string, doing: string): string {
  const cause = CAUSES[code];
  return cause ? `${path}: cannot ${doing}: ${cause.why} (${code}); ${cause.fix}` : `${path}: cannot ${doing} (${code})`;
}

/** The UserError for an environment filesystem failure at `path`; anything else is returned as it was. */
export function asFsUserError(e: unknown, path: string, doing: string): unknown {
  if (e instanceof UserError || !isEnvironmentFsError(e)) return e;
  return new UserError(fsErrorMessage(e.code!, path, doing));
}

/** Runs `fn`, turning an environment filesystem failure into a UserError naming `path`. */
export function withFsErrors<T>(path: string, doing: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw asFsUserError(e, path, doing);
  }
}
