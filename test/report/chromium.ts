import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Headless Chromium (Debian's `chromium` package) for the HTML report tests: the plain command
 * line, `--dump-dom` and `--screenshot`. Each run is its own process group, killed whole when it
 * outlives its timeout. CHROMIUM is undefined when no browser is installed (the tests then skip).
 */
export const CHROMIUM: string | undefined = ['chromium', 'chromium-browser', 'google-chrome'].find((name) => spawnSync('sh', ['-c', `command -v ${name}`]).status === 0);

export const NO_CHROMIUM = 'skipped: chromium is not installed (.ci/run installs it with apt-get install chromium)';

export async function runChromium(args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const profile = mkdtempSync(join(tmpdir(), 'pare-chromium-'));
  try {
    return await new Promise((resolve, reject) => {
      const child = spawn(CHROMIUM!, ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--no-default-browser-check', '--hide-scrollbars', `--user-data-dir=${profile}`, ...args], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
        reject(new Error(`chromium ran past ${timeoutMs} ms and was killed: ${stderr.slice(-2000)}`));
      }, timeoutMs);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        // headless Chromium can leave helper processes behind; end the whole group
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
        resolve({ code, stdout, stderr });
      });
    });
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

/** What the page looked like to the browser once loaded (see HOOK). */
export interface PageProbe {
  errors: string[];
  /** every URL the page fetched (none for a self-contained page) */
  resources: string[];
  points: number;
  pareto: number;
  charts: { declared: number; rows: number; bars: number }[];
  title: string;
}

/**
 * Put first in <head>, before the page's Content-Security-Policy (a meta CSP governs only what
 * follows it): records errors, failed loads and CSP violations, and on load writes what it found
 * into the DOM for --dump-dom to carry out.
 */
const HOOK = `<script>
window.__pareErrors = [];
addEventListener('error', (e) => __pareErrors.push(e.message || 'failed to load ' + ((e.target && (e.target.src || e.target.href)) || 'a resource')), true);
addEventListener('unhandledrejection', (e) => __pareErrors.push(String(e.reason)));
document.addEventListener('securitypolicyviolation', (e) => __pareErrors.push('blocked by the page CSP: ' + e.blockedURI));
addEventListener('load', () => {
  const charts = [...document.querySelectorAll('svg.chart.layers')].map((s) => ({ declared: Number(s.dataset.layers), rows: s.querySelectorAll('g.layer').length, bars: s.querySelectorAll('rect.bar.after').length }));
  const probe = { errors: __pareErrors, resources: performance.getEntriesByType('resource').map((r) => r.name), points: document.querySelectorAll('svg.chart.scatter circle.point').length, pareto: document.querySelectorAll('svg.chart.scatter circle.point.pareto').length, charts, title: document.title };
  const pre = document.createElement('pre');
  pre.id = 'pare-probe';
  pre.textContent = JSON.stringify(probe);
  document.body.appendChild(pre);
});
</script>`;

/** Load `htmlPath` (a copy with the hook) and return what the browser saw. */
export async function probePage(htmlPath: string, dir: string): Promise<PageProbe> {
  const html = readFileSync(htmlPath, 'utf8');
  const probed = join(dir, 'probed.html');
  writeFileSync(probed, html.replace('<head>', `<head>\n${HOOK}`));
  const r = await runChromium(['--virtual-time-budget=5000', '--dump-dom', `file://${probed}`]);
  const m = /<pre id="pare-probe">([\s\S]*?)<\/pre>/.exec(r.stdout);
  if (!m) throw new Error(`chromium printed no probe (exit ${r.code}): ${r.stderr.slice(-2000)}`);
  const text = m[1]!.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&');
  return JSON.parse(text) as PageProbe;
}

/** Width and height from a PNG's IHDR, or undefined when the file is not a PNG. */
export function pngSize(path: string): { width: number; height: number } | undefined {
  const b = readFileSync(path);
  if (b.length < 24 || b.readUInt32BE(0) !== 0x89504e47 || b.toString('ascii', 12, 16) !== 'IHDR') return undefined;
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
}
