import { UserError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { INPUT_LIMITS, readInputFile } from '../util/read-file.js';
import { VERSION } from '../version.js';
import { asDiff, DIFF_SCHEMA, DiffDocumentSchema, type DiffDocument } from './diff-document.js';
import { asReport, ReportSchema } from './report-reader-schema.js';
import { REPORT_SCHEMA, REPORT_VERSION, type Report } from './schema.js';
import { asSweep, SWEEP_SCHEMA, SWEEP_VERSION, SweepReportSchema, type SweepReport } from './sweep.js';

/** The documents pare writes and reads back: a run's report, a merged sweep, a diff (`report diff --format json`). */
export type Document = { kind: 'report'; report: Report } | { kind: 'sweep'; sweep: SweepReport } | { kind: 'diff'; diff: DiffDocument };

const SCHEMAS: Record<string, { version: number; noun: string; what: string }> = {
  [REPORT_SCHEMA]: { version: REPORT_VERSION, noun: 'report', what: 'a report written by pare eval -o or pare compress --report' },
  [SWEEP_SCHEMA]: { version: SWEEP_VERSION, noun: 'sweep', what: 'a sweep written by pare report merge' },
  [DIFF_SCHEMA]: { version: 1, noun: 'diff', what: 'a diff written by pare report diff --format json' },
};

/** Read a JSON document and check its schema and version are among `accept`; every problem is one line naming the file. */
function readJson(path: string, accept: readonly string[]): { schema: string; raw: unknown } {
  const wanted = accept.map((s) => SCHEMAS[s]!.what).join(', or ');
  let text: string;
  try {
    text = readInputFile(path, 'file', { maxBytes: INPUT_LIMITS.json }).toString('utf8');
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    throw new UserError(`${e.message}; pass ${wanted}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${path}: not JSON (${(e as Error).message.split('\n')[0]}); expected ${wanted}`);
  }
  const head = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? (raw as Record<string, unknown>) : undefined;
  const schema = typeof head?.schema === 'string' ? head.schema : undefined;
  if (!head || !schema || !accept.includes(schema)) {
    const found = head ? `schema ${JSON.stringify(head.schema) ?? 'missing'}` : `a JSON ${Array.isArray(raw) ? 'array' : raw === null ? 'null' : typeof raw}`;
    const nouns = accept.map((s) => `a pare ${SCHEMAS[s]!.noun}`).join(' or ');
    throw new UserError(`${path}: not ${nouns} (expected "schema": ${accept.map((s) => `"${s}"`).join(' or ')}, found ${found})`);
  }
  const version = SCHEMAS[schema]!.version;
  if (head.version !== version) {
    throw new UserError(
      `${path}: ${SCHEMAS[schema]!.noun} version ${JSON.stringify(head.version) ?? '(missing)'} is not supported; pare ${VERSION} reads version ${version}. Use the pare that wrote it, or re-run it with this one`,
    );
  }
  return { schema, raw };
}

function validated<T>(path: string, kind: string, schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: { issues: { path: PropertyKey[]; message: string }[] } } }, raw: unknown): T {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 3).map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`);
    const more = parsed.error.issues.length > 3 ? `; and ${parsed.error.issues.length - 3} more` : '';
    throw new UserError(`${path}: malformed ${kind}: ${issues.join('; ')}${more}`);
  }
  return parsed.data;
}

/** Read and validate a report; every problem is a one-line UserError naming the file. */
export function readReport(path: string): Report {
  const { raw } = readJson(path, [REPORT_SCHEMA]);
  return asReport(validated(path, 'pare report', ReportSchema, raw));
}

/** A report, a merged sweep or a diff, told apart by its `schema`; `accept` limits which. */
export function readDocument(path: string, accept: readonly Document['kind'][] = ['report', 'sweep', 'diff']): Document {
  const bySchema = { report: REPORT_SCHEMA, sweep: SWEEP_SCHEMA, diff: DIFF_SCHEMA } as const;
  const { schema, raw } = readJson(path, accept.map((k) => bySchema[k]));
  if (schema === REPORT_SCHEMA) return { kind: 'report', report: asReport(validated(path, 'pare report', ReportSchema, raw)) };
  if (schema === SWEEP_SCHEMA) return { kind: 'sweep', sweep: asSweep(validated(path, 'pare sweep', SweepReportSchema, raw)) };
  return { kind: 'diff', diff: asDiff(validated(path, 'pare diff', DiffDocumentSchema, raw)) };
}

/** Write a document atomically as pretty JSON with a trailing newline. */
export function writeJsonDocument(path: string, doc: unknown, what = 'report'): void {
  writeText(path, `${JSON.stringify(doc, null, 2)}\n`, what);
}

/** Write `text` atomically; a filesystem failure is a one-line UserError naming the file. */
export function writeText(path: string, text: string, what: string): void {
  try {
    writeFileAtomic(path, text);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === undefined) throw e;
    throw new UserError(`${path}: cannot write the ${what} (${code}); check that the folder exists and is writable`);
  }
}

/** The report as its file holds it: pretty JSON with a trailing newline. */
export function reportJson(report: Report): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}

/** Write `report` atomically as pretty JSON with a trailing newline. */
export function writeReport(path: string, report: Report): void {
  writeJsonDocument(path, report, 'report');
}
