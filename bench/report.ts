/**
 * Benchmarks write their results into docs/benchmarks.md, each into its own section between
 * markers, with the command that made them and the machine they ran on.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const FILE = path.resolve(__dirname, '..', 'docs', 'benchmarks.md');
const HEADER = `# Benchmarks

Made by \`npm run bench\` (each section names its own command). The machine is shared and
noisy: compare ratios measured within one run, not absolute numbers across runs.
`;

export function writeSection(name: string, body: string): void {
  const start = `<!-- bench:${name}:start -->`;
  const end = `<!-- bench:${name}:end -->`;
  const stamp = `_${new Date().toISOString()} on ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}_`;
  const section = `${start}\n${body.trim()}\n\n${stamp}\n${end}`;
  let text = existsSync(FILE) ? readFileSync(FILE, 'utf8') : HEADER;
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  text =
    a >= 0 && b > a
      ? text.slice(0, a) + section + text.slice(b + end.length)
      : `${text.trimEnd()}\n\n${section}\n`;
  writeFileSync(FILE, text);
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? NaN;
}

export function table(head: string[], rows: Array<Array<string | number>>): string {
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}
