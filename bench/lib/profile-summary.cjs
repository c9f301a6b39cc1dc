// Self time by function and by file/package from .cpuprofile files.
const fs = require('node:fs');
const files = process.argv.slice(2);
const byFn = new Map(),
  byFile = new Map();
let total = 0,
  idle = 0;
for (const f of files) {
  const p = JSON.parse(fs.readFileSync(f, 'utf8'));
  const nodes = new Map(p.nodes.map((n) => [n.id, n]));
  const counts = new Map();
  for (const id of p.samples) counts.set(id, (counts.get(id) || 0) + 1);
  for (const [id, c] of counts) {
    const n = nodes.get(id);
    const cf = n.callFrame;
    total += c;
    if (cf.functionName === '(idle)') {
      idle += c;
      continue;
    }
    let url = cf.url.replace(/^file:\/\//, '');
    let file = url.includes('node_modules/')
      ? url
          .split('node_modules/')
          .pop()
          .split('/')
          .slice(0, url.split('node_modules/').pop().startsWith('@') ? 2 : 1)
          .join('/')
      : url.replace(/.*\/dist\//, 'dist/') || `(${cf.functionName})`;
    if (url.startsWith('node:')) file = url;
    const fn = `${cf.functionName || '(anon)'} ${url.replace(/.*\/(node_modules|dist)\//, '')}:${cf.lineNumber}`;
    byFn.set(fn, (byFn.get(fn) || 0) + c);
    byFile.set(file, (byFile.get(file) || 0) + c);
  }
}
const busy = total - idle;
const show = (m, k) =>
  [...m]
    .sort((a, b) => b[1] - a[1])
    .slice(0, k)
    .map(([n, c]) => `${((100 * c) / busy).toFixed(1).padStart(5)} %  ${n}`)
    .join('\n');
console.log(`samples ${total}, idle ${idle}, busy ${busy}`);
console.log('--- by file\n' + show(byFile, 30));
console.log('--- by function\n' + show(byFn, 45));
