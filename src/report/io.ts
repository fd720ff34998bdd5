import { UserError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { INPUT_LIMITS, readInputFile } from '../util/read-file.js';
import { VERSION } from '../version.js';
import { asReport, REPORT_SCHEMA, REPORT_VERSION, ReportSchema, type Report } from './schema.js';

/** Read and validate a report; every problem is a one-line UserError naming the file. */
export function readReport(path: string): Report {
  let text: string;
  try {
    text = readInputFile(path, 'file', { maxBytes: INPUT_LIMITS.json }).toString('utf8');
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    throw new UserError(`${e.message}; pass a report written by pare eval -o or pare compress --report`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${path}: not JSON (${(e as Error).message.split('\n')[0]}); expected a pare report`);
  }
  const head = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? (raw as Record<string, unknown>) : undefined;
  if (head?.schema !== REPORT_SCHEMA) {
    const found = head ? `schema ${JSON.stringify(head.schema) ?? 'missing'}` : `a JSON ${Array.isArray(raw) ? 'array' : raw === null ? 'null' : typeof raw}`;
    throw new UserError(`${path}: not a pare report (expected "schema": "${REPORT_SCHEMA}", found ${found})`);
  }
  if (head.version !== REPORT_VERSION) {
    throw new UserError(
      `${path}: report version ${JSON.stringify(head.version) ?? '(missing)'} is not supported; pare ${VERSION} reads version ${REPORT_VERSION}. Use the pare that wrote it, or re-run it with this one`,
    );
  }
  const parsed = ReportSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 3).map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`);
    const more = parsed.error.issues.length > 3 ? `; and ${parsed.error.issues.length - 3} more` : '';
    throw new UserError(`${path}: malformed pare report: ${issues.join('; ')}${more}`);
  }
  return asReport(parsed.data);
}

/** Write `report` atomically as pretty JSON with a trailing newline. */
export function writeReport(path: string, report: Report): void {
  try {
    writeFileAtomic(path, `${JSON.stringify(report, null, 2)}\n`);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === undefined) throw e;
    throw new UserError(`${path}: cannot write the report (${code}); check that the folder exists and is writable`);
  }
}
