/**
 * The HTML page around the report: one self-contained file. Inline CSS, inline SVG, no scripts, no
 * fonts or images from anywhere; the Content-Security-Policy forbids every fetch, so opening it
 * never touches the network.
 */

export function esc(text: unknown): string {
  return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** A number for an SVG attribute: two decimals are plenty for pixels. */
export function px(v: number): string {
  return String(Math.round(v * 100) / 100);
}

const CSS = `
:root { color-scheme: light; --ink: #1d2430; --muted: #5b6574; --line: #d8dde5; --accent: #2458c6; --front: #d9480f; --ok: #2b8a3e; --bad: #c92a2a; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--ink); background: #fff; }
main { max-width: 1080px; margin: 0 auto; padding: 20px 24px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 14px; margin: 16px 0 6px; }
.meta { color: var(--muted); margin: 0 0 2px; word-break: break-all; }
code { font: 12px/1.3 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
table { border-collapse: collapse; margin: 6px 0; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 10px 3px 0; text-align: right; vertical-align: top; white-space: nowrap; }
th { color: var(--muted); font-weight: 600; }
th:first-child, td:first-child, td.l, th.l { text-align: left; }
tr.pareto td { font-weight: 600; }
.ok { color: var(--ok); } .bad { color: var(--bad); font-weight: 600; }
details { margin: 6px 0; } summary { cursor: pointer; }
svg.chart { display: block; max-width: 100%; height: auto; font: 11px system-ui, sans-serif; }
svg .axis line, svg .axis path { stroke: #9aa3b0; stroke-width: 1; fill: none; }
svg .grid line { stroke: #eef0f4; }
svg text { fill: var(--ink); } svg text.muted { fill: var(--muted); }
svg .point { fill: var(--accent); fill-opacity: 0.75; stroke: #fff; stroke-width: 1; }
svg .point.pareto { fill: var(--front); fill-opacity: 1; }
svg .point.base { fill: #fff; stroke: var(--muted); stroke-width: 1.5; }
svg .point.fails { stroke: var(--bad); stroke-width: 2.5; }
svg .front { fill: none; stroke: var(--front); stroke-width: 1.5; stroke-dasharray: 5 3; }
svg .reference { fill: none; stroke: var(--ink); stroke-width: 1.5; }
svg .bar.value { fill: var(--accent); } svg .bar.objective { fill: #7048e8; }
svg .bar.before { fill: #dbe4ff; } svg .bar.after { fill: #364fc7; }
svg .track { fill: #f3f5f8; }
.legend { color: var(--muted); font-size: 12px; margin: 2px 0 0; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 5px; margin: 0 4px 0 12px; vertical-align: -1px; }
`;

export function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
}
