import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { run } from '../../src/cli/main.js';
import { UserError } from '../../src/errors.js';
import { readReport, writeReport } from '../../src/report/io.js';
import { tempDir } from '../helpers.js';
import { captureIo, compressReport } from './reports.js';

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir('pare-report-')));
afterEach(() => cleanup());

async function show(path: string): Promise<{ code: number; out: string; err: string }> {
  const c = captureIo();
  const code = await run(['report', 'show', path], c.io);
  return { code, out: c.out(), err: c.err() };
}

describe('report io', () => {
  it('write then read returns the same report', () => {
    const report = compressReport(1.2377);
    const path = join(dir, 'report.json');
    writeReport(path, report);
    expect(readReport(path)).toEqual(report);
    const text = readFileSync(path, 'utf8');
    expect(text.endsWith('}\n')).toBe(true);
    expect(text).toContain('\n  "schema": "pare.report",\n');
    expect(readdirSync(dir)).toEqual(['report.json']); // no temp file left beside it
  });

  it('newReport fills schema, version, tool and an ISO date', () => {
    const r = compressReport(1.3);
    expect(r.schema).toBe('pare.report');
    expect(r.version).toBe(1);
    expect(r.tool.name).toBe('pare');
    expect(r.tool.node).toBe(process.version);
    expect(new Date(r.created).toISOString()).toBe(r.created);
  });

  it('keeps fields it does not know', () => {
    const path = join(dir, 'extra.json');
    writeFileSync(path, JSON.stringify({ ...compressReport(1.3), future_field: { a: 1 } }));
    expect((readReport(path) as unknown as Record<string, unknown>).future_field).toEqual({ a: 1 });
  });

  it('a missing report is a user error naming the file', async () => {
    const path = join(dir, 'nope.json');
    expect(() => readReport(path)).toThrow(UserError);
    const r = await show(path);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`${path}: no such file`);
    expect(r.err.trim().split('\n')).toHaveLength(1);
  });

  it('a directory is a user error naming it', async () => {
    const r = await show(dir);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`${dir}: is a directory`);
  });

  it('garbage is a user error saying it is not JSON', async () => {
    const path = join(dir, 'garbage.json');
    writeFileSync(path, '\u0000\u0001not json at all');
    const r = await show(path);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(new RegExp(`${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not JSON`));
    expect(r.err.trim().split('\n')).toHaveLength(1);
  });

  it('JSON that is not a pare report is a user error', async () => {
    const path = join(dir, 'package.json');
    writeFileSync(path, JSON.stringify({ name: 'x', version: '1.0.0' }));
    const r = await show(path);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`${path}: not a pare report or a pare sweep (expected "schema": "pare.report" or "pare.sweep", found schema missing)`);
    expect(() => readReport(path)).toThrow(`${path}: not a pare report (expected "schema": "pare.report", found schema missing)`);
  });

  it('an unsupported version is a user error naming file and version', async () => {
    const path = join(dir, 'v2.json');
    writeFileSync(path, JSON.stringify({ ...compressReport(1.3), version: 2 }));
    const r = await show(path);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`${path}: report version 2 is not supported`);
    expect(r.err).toContain('reads version 1');
  });

  it('a malformed report names the bad field', async () => {
    const path = join(dir, 'bad.json');
    const report = compressReport(1.3) as unknown as { measurements: { model: { size: Record<string, unknown> } } };
    delete report.measurements.model.size.file_bytes;
    writeFileSync(path, JSON.stringify(report));
    const r = await show(path);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`${path}: malformed pare report: measurements.model.size.file_bytes:`);
    expect(r.err.trim().split('\n')).toHaveLength(1);
  });

  it('report show prints Markdown, or the JSON with --format json', async () => {
    const path = join(dir, 'report.json');
    const report = compressReport(1.2377);
    writeReport(path, report);
    const md = await show(path);
    expect(md.code).toBe(0);
    expect(md.out).toContain('## pare compress report');
    const c = captureIo();
    expect(await run(['report', 'show', path, '--format', 'json'], c.io)).toBe(0);
    expect(JSON.parse(c.out())).toEqual(report);
    expect(await run(['report', 'show', path, '--format', 'html'], captureIo().io)).toBe(2);
  });
});
