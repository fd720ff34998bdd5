import { readFileSync } from 'node:fs';
import { UserError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { VERSION } from '../version.js';
import { asReport, REPORT_SCHEMA, REPORT_VERSION, ReportSchema, type Report } from './schema.js';

/** Read and validate a report; every problem is a one-line UserError naming the file. */
export function readReport(path: string): Report {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory, expected a report .json' : `cannot be read (${code ?? (e as Error).message})`;
    throw new UserError(`${path}: ${why}; pass a report written by pare eval -o or pare compress --report`);
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

/** The report as its file holds it: pretty JSON with a trailing newline. */
export function reportJson(report: Report): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}

/** Write `report` atomically (a filesystem failure is a UserError naming `path`). */
export function writeReport(path: string, report: Report): void {
  writeFileAtomic(path, reportJson(report));
}
