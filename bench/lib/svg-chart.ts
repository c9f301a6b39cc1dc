/**
 * A latency-over-time chart as plain SVG markup (no browser, no dependency): one series of
 * points per setup, a log-scaled latency axis (a flood multiplies latency, so a linear axis
 * would flatten the protected series into the floor), a dashed reference line.
 */

export interface Point {
  /** Seconds since the start of the window. */
  t: number;
  /** Latency, ms. */
  ms: number;
}

export interface Series {
  label: string;
  color: string;
  points: Point[];
}

export interface Chart {
  title: string;
  subtitle: string;
  series: Series[];
  /** Length of the time axis, s. */
  seconds: number;
  /** A horizontal reference (e.g. the victims' p99 alone). */
  reference?: { ms: number; label: string };
}

const W = 900;
const H = 460;
const M = { left: 70, right: 20, top: 62, bottom: 110 };

function esc(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}

const fmt = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(1));

export function latencyChart(c: Chart): string {
  const all = c.series.flatMap((s) => s.points.map((p) => p.ms)).filter((v) => v > 0);
  if (c.reference) all.push(c.reference.ms);
  const lo = Math.max(1, Math.min(...all, 100) * 0.8);
  const hi = Math.max(...all, lo * 10) * 1.15;
  const [l0, l1] = [Math.log10(lo), Math.log10(hi)];
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const x = (t: number) => M.left + (Math.min(Math.max(t, 0), c.seconds) / c.seconds) * pw;
  const y = (ms: number) => M.top + ph - ((Math.log10(Math.max(ms, lo)) - l0) / (l1 - l0)) * ph;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${M.left}" y="24" font-size="16" font-weight="bold">${esc(c.title)}</text>`,
    `<text x="${M.left}" y="44" fill="#555">${esc(c.subtitle)}</text>`,
  );
  // Latency grid: 1-2-5 steps within the range.
  for (let decade = Math.floor(l0); decade <= Math.ceil(l1); decade++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** decade;
      if (v < lo || v > hi) continue;
      const yy = y(v).toFixed(1);
      out.push(
        `<line x1="${M.left}" x2="${W - M.right}" y1="${yy}" y2="${yy}" stroke="#e4e4e4"/>`,
        `<text x="${M.left - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle" fill="#444">${v >= 1000 ? `${fmt(v / 1000)} s` : `${fmt(v)} ms`}</text>`,
      );
    }
  }
  const step = c.seconds <= 12 ? 1 : c.seconds <= 30 ? 2 : 5;
  for (let t = 0; t <= c.seconds + 1e-9; t += step) {
    const xx = x(t).toFixed(1);
    out.push(
      `<line x1="${xx}" x2="${xx}" y1="${M.top}" y2="${M.top + ph}" stroke="#f0f0f0"/>`,
      `<text x="${xx}" y="${M.top + ph + 16}" text-anchor="middle" fill="#444">${t} s</text>`,
    );
  }
  out.push(
    `<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`,
    `<text x="${M.left + pw / 2}" y="${M.top + ph + 34}" text-anchor="middle" fill="#333">time since the flood started (victim request start)</text>`,
    `<text transform="translate(16 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle" fill="#333">victim latency (log scale)</text>`,
  );
  if (c.reference) {
    const yy = y(c.reference.ms).toFixed(1);
    out.push(
      `<line x1="${M.left}" x2="${W - M.right}" y1="${yy}" y2="${yy}" stroke="#333" stroke-dasharray="6 4"/>`,
      `<text x="${W - M.right - 4}" y="${Number(yy) - 5}" text-anchor="end" fill="#333">${esc(c.reference.label)}</text>`,
    );
  }
  for (const s of c.series) {
    const pts = [...s.points].sort((a, b) => a.t - b.t);
    if (pts.length > 1) {
      const d = pts.map((p) => `${x(p.t).toFixed(1)},${y(p.ms).toFixed(1)}`).join(' ');
      out.push(
        `<polyline points="${d}" fill="none" stroke="${s.color}" stroke-opacity="0.45" stroke-width="1"/>`,
      );
    }
    for (const p of pts) {
      out.push(
        `<circle cx="${x(p.t).toFixed(1)}" cy="${y(p.ms).toFixed(1)}" r="2" fill="${s.color}"/>`,
      );
    }
  }
  c.series.forEach((s, i) => {
    const lx = M.left + (i % 2) * (pw / 2);
    const ly = H - 50 + Math.floor(i / 2) * 20;
    out.push(
      `<rect x="${lx}" y="${ly - 9}" width="12" height="12" fill="${s.color}"/>`,
      `<text x="${lx + 18}" y="${ly + 1}" fill="#222">${esc(s.label)}</text>`,
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
