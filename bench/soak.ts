/**
 * `[SOAK_REQUESTS=N SOAK_CONCURRENCY=C] npm run soak` (scripts/bench.sh soak; not part of a plain
 * `npm run bench`: it takes about 20 minutes): the front door as `npm start` runs it (the
 * README's command, on ports of its own), under N requests (100,000 by default) of a mix a
 * careless or hostile client sends: chats of two tenants (cacheable, not, streamed), model
 * lists, a refused tool, malformed JSON, no key, an empty body. Samples the RSS of every
 * process of the stack (the gateway's nginx and plugin servers, the front door's node process
 * with the mock upstream, Redis, Milvus) every 2 s, and each plugin server's open events at the
 * end. Fails (exit 1) when a process's RSS band (floor or ceiling) rises from the first half
 * of the run after the warm-up to the second, or above it when idle, or an event stays open;
 * writes its figures to docs/benchmarks.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { table, writeSection } from './report';

const root = path.resolve(__dirname, '..');

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v =
    i >= 0 ? Number(process.argv[i + 1]) : Number(process.env[`SOAK_${name.toUpperCase()}`]);
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

const REQUESTS = arg('requests', 100_000);
const CONCURRENCY = arg('concurrency', 16);
const GATEWAY_PORT = arg('gateway-port', 18000);
const UPSTREAM_PORT = arg('upstream-port', 19000);
/** Growth allowed between the sample after warm-up and the end: noise, not a leak. */
const SLACK_FRACTION = 0.15;
const SLACK_MB = 32;
/** How often every process's RSS is sampled, and the idle pause at the end. */
const SAMPLE_MS = 2000;
const IDLE_MS = 20_000;
/** The plugin servers' metrics ports in kong.yml (tenant-auth … circuit-breaker). */
const METRICS_PORTS = [9201, 9202, 9203, 9204, 9205, 9206];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Proc {
  pid: number;
  label: string;
}

function readProc(pid: number, file: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return undefined;
  }
}

function rssMb(pid: number): number | undefined {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readProc(pid, 'status') ?? '');
  return m ? Number(m[1]) / 1024 : undefined;
}

function children(): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const stat = readProc(Number(d), 'stat');
    if (!stat) continue;
    // pid (comm) state ppid …: comm may hold spaces and parentheses; ppid follows the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    out.set(ppid, [...(out.get(ppid) ?? []), Number(d)]);
  }
  return out;
}

function label(pid: number): string {
  const cmd = (readProc(pid, 'cmdline') ?? '').split('\0').filter(Boolean);
  const joined = cmd.join(' ');
  const plugin =
    /--sock-name\s+(\S+?)\.sock/.exec(joined) ?? /pluginservers\/([\w-]+)/.exec(joined);
  if (/kong-js-pluginserver/.test(joined) && plugin) return `plugin server ${plugin[1]}`;
  if (/^nginx: master/.test(joined)) return 'nginx master (Kong)';
  if (/^nginx: worker/.test(joined)) return 'nginx worker (Kong)';
  if (/frontdoor\.js/.test(joined)) return 'front door (node: mock upstream, harness if no Kong)';
  if (/redis-server/.test(joined)) return 'Redis';
  if (/milvus run standalone/.test(joined)) return 'Milvus';
  if (/milvus-server/.test(joined)) return 'Milvus launcher (python)';
  if (/prometheus/.test(joined)) return 'Prometheus';
  return joined.slice(0, 60);
}

/** Every process of the stack: descendants of `npm start`, Redis, Milvus. */
function stackProcesses(startPid: number, kongPrefix: string | undefined): Proc[] {
  const kids = children();
  const found: number[] = [];
  const walk = (pid: number) => {
    for (const c of kids.get(pid) ?? []) {
      found.push(c);
      walk(c);
    }
  };
  walk(startPid);
  // Kong's nginx master daemonizes away from the start script: found by the run's prefix.
  if (kongPrefix) {
    for (const pid of new Set([...kids.keys(), ...[...kids.values()].flat()])) {
      const cmd = (readProc(pid, 'cmdline') ?? '').replace(/\0/g, ' ');
      if (/^nginx: master/.test(cmd) && cmd.includes(kongPrefix) && !found.includes(pid)) {
        found.push(pid);
        walk(pid);
      }
    }
  }
  for (const file of [
    `.run/redis/redis-6379.pid`,
    `.run/milvus/milvus.pid`,
    `.run/prometheus/prometheus.pid`,
  ]) {
    try {
      const pid = Number(readFileSync(path.join(root, file), 'utf8').trim());
      found.push(pid);
      walk(pid); // Milvus's launcher runs the server as its child
    } catch {
      // not ours
    }
  }
  return [...new Set(found)]
    .filter((pid) => rssMb(pid) !== undefined)
    .map((pid) => ({ pid, label: label(pid) }))
    .filter((p) => !/^(bash|sh|npm|sleep|tee|cat)\b/.test(p.label));
}

function startFrontDoor(): Promise<{ child: ChildProcess; banner: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [path.join(root, 'scripts', 'start.sh')], {
      cwd: root,
      env: {
        ...process.env,
        GATEWAY_PORT: String(GATEWAY_PORT),
        UPSTREAM_PORT: String(UPSTREAM_PORT),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const timer = setTimeout(
      () => reject(new Error(`npm start did not get ready:\n${out}`)),
      600_000,
    );
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const i = out.indexOf('front door ready');
      if (i >= 0) {
        clearTimeout(timer);
        resolve({ child, banner: out.slice(i).split('\n')[0] ?? '' });
      }
    });
    child.stderr?.on('data', () => undefined);
    child.on('exit', (code) =>
      reject(new Error(`npm start exited (${code}) before ready:\n${out}`)),
    );
  });
}

/** Every 5xx answer, by status and the error body's `code`: each one explained in the report. */
const serverErrors = new Map<string, number>();

function noteServerError(status: number, body: string): void {
  let code = 'no OpenAI-style body';
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown } };
    if (typeof parsed.error?.code === 'string') code = parsed.error.code;
  } catch {
    // not JSON: counted as such
  }
  const key = `${status} ${code}`;
  serverErrors.set(key, (serverErrors.get(key) ?? 0) + 1);
}

const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });

function request(
  method: string,
  pathname: string,
  headers: Record<string, string>,
  body?: string,
): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request(
      { host: '127.0.0.1', port: GATEWAY_PORT, method, path: pathname, headers, agent },
      (res) => {
        const status = res.statusCode ?? 0;
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => {
          if (status >= 500) chunks.push(d);
        });
        res.on('end', () => {
          if (status >= 500) noteServerError(status, Buffer.concat(chunks).toString('utf8'));
          resolve(status);
        });
        res.on('error', () => resolve(-1));
      },
    );
    req.on('error', () => resolve(-1));
    req.end(body);
  });
}

const ACME = { apikey: 'acme-demo-key', 'content-type': 'application/json' };
const GLOBEX = { apikey: 'globex-demo-key', 'content-type': 'application/json' };
const chatBody = (content: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }], ...extra });

/** The i-th request of the mix: what a busy platform sees, refusals included. */
function nth(i: number): Promise<number> {
  switch (i % 20) {
    case 0:
    case 1:
    case 2:
    case 3:
      return request(
        'POST',
        '/v1/chat/completions',
        ACME,
        chatBody(`question ${i % 50}`, { temperature: 0 }),
      );
    case 4:
    case 5:
    case 6:
      return request(
        'POST',
        '/v1/chat/completions',
        ACME,
        chatBody(`unique ${i}`, { temperature: 0.7 }),
      );
    case 7:
      return request(
        'POST',
        '/v1/chat/completions',
        ACME,
        chatBody(`stream ${i}`, { stream: true, stream_options: { include_usage: true } }),
      );
    case 8:
    case 9:
    case 10:
      return request(
        'POST',
        '/v1/chat/completions',
        GLOBEX,
        chatBody(`free ${i % 30}`, { temperature: 0 }),
      );
    case 11:
      return request('GET', '/v1/models', { apikey: 'globex-demo-key' });
    case 12:
      return request(
        'POST',
        '/v1/embeddings',
        ACME,
        JSON.stringify({ model: 'text-embedding-3-small', input: `e ${i}` }),
      );
    case 13:
      return request(
        'POST',
        '/v1/chat/completions',
        GLOBEX,
        chatBody('x', {
          tools: [{ type: 'function', function: { name: 'crm_write', parameters: {} } }],
          tool_choice: { type: 'function', function: { name: 'crm_write' } },
        }),
      );
    case 14:
      return request(
        'POST',
        '/v1/chat/completions',
        ACME,
        '{"model": "gpt-4o-mini", "messages": [',
      );
    case 15:
      return request(
        'POST',
        '/v1/chat/completions',
        { 'content-type': 'application/json' },
        chatBody('no key'),
      );
    case 16:
      return request('POST', '/v1/chat/completions', { ...ACME, 'content-length': '0' });
    case 17:
      return request(
        'POST',
        '/v1/chat/completions',
        { apikey: 'wrong-key', 'content-type': 'application/json' },
        chatBody('wrong key'),
      );
    case 18:
      return request(
        'POST',
        '/v1/chat/completions',
        ACME,
        '{"__proto__":{"admin":true},"model":"gpt-4o-mini"}',
      );
    default:
      return request('GET', '/v1/nope', { apikey: 'acme-demo-key' });
  }
}

const ERROR_KINDS = 8;

/**
 * Kong's error-log lines at level error or above, counted by message (request-specific parts
 * cut off): a soak should leave none but the ones a hostile mix explains.
 */
function kongErrorLines(prefix: string | undefined): Map<string, number> | undefined {
  if (!prefix) return undefined;
  let text: string;
  try {
    text = readFileSync(path.join(prefix, 'logs', 'error.log'), 'utf8');
  } catch {
    return undefined;
  }
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /\[(error|crit|alert|emerg)\] \d+#\d+: (?:\*\d+ )?(.*)$/.exec(line);
    if (!m?.[2]) continue;
    const message = m[2]
      .replace(/, (client|context|request|upstream|host|server|request_id): .*$/, '')
      .replace(/\b[0-9a-f]{32}\b|\b[0-9a-f-]{36}\b/g, '<id>')
      .replace(/\d+/g, 'N')
      .slice(0, 140);
    out.set(message, (out.get(message) ?? 0) + 1);
  }
  return out;
}

async function pendingEvents(): Promise<Record<number, number | undefined>> {
  const out: Record<number, number | undefined> = {};
  for (const port of METRICS_PORTS) {
    try {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const m = /^kta_pluginserver_pending_events (\d+)/m.exec(text);
      out[port] = m ? Number(m[1]) : undefined;
    } catch {
      out[port] = undefined;
    }
  }
  return out;
}

/** One process's samples in one stretch of the run: the band its RSS moved in. */
interface Band {
  min: number;
  max: number;
  n: number;
}

const addTo = (b: Band | undefined, v: number): Band =>
  b ? { min: Math.min(b.min, v), max: Math.max(b.max, v), n: b.n + 1 } : { min: v, max: v, n: 1 };

const band = (b: Band | undefined): string => (b ? `${b.min.toFixed(0)}–${b.max.toFixed(0)}` : '—');

async function main(): Promise<void> {
  const t0 = Date.now();
  process.stdout.write(
    `soak: starting the front door as npm start does (gateway :${GATEWAY_PORT})…\n`,
  );
  const { child, banner } = await startFrontDoor();
  const stop = async () => {
    child.kill('SIGINT');
    await new Promise((r) => child.once('exit', r));
  };
  try {
    process.stdout.write(`soak: ${banner}\n`);
    const kongPrefix = /its log: (\S+)\/logs\/error\.log/.exec(banner)?.[1];
    const procs = stackProcesses(child.pid ?? 0, kongPrefix);
    // The stretches of the run: the warm-up (first 10 %), the two halves of the rest, and an
    // idle pause. A garbage-collected process's RSS saws up and down between collections (the
    // plugin servers' V8 heaps by tens of MB); a leak lifts the whole band, floor and ceiling,
    // from the first half to the second. Sampled every SAMPLE_MS, so each half holds several
    // collections.
    const stretches = ['warm-up (0–10 %)', '10–55 %', '55–100 %', `${IDLE_MS / 1000} s idle`];
    let stretch = 0;
    const bands = new Map<number, Array<Band | undefined>>(procs.map((p) => [p.pid, []]));
    const ready = new Map(procs.map((p) => [p.pid, rssMb(p.pid)]));
    const sampleAll = () => {
      for (const p of procs) {
        const mb = rssMb(p.pid);
        const row = bands.get(p.pid)!;
        if (mb !== undefined) row[stretch] = addTo(row[stretch], mb);
      }
    };
    const sampler = setInterval(sampleAll, SAMPLE_MS);
    const statuses = new Map<number, number>();
    let next = 0;
    let done = 0;
    const loadStart = Date.now();
    let lastReport = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        for (;;) {
          const i = next++;
          if (i >= REQUESTS) return;
          const s = await nth(i);
          statuses.set(s, (statuses.get(s) ?? 0) + 1);
          done++;
          const want = done >= 0.55 * REQUESTS ? 2 : done >= 0.1 * REQUESTS ? 1 : 0;
          if (want !== stretch) {
            sampleAll();
            stretch = want;
          }
          if (done - lastReport >= REQUESTS / 10) {
            lastReport = done;
            process.stdout.write(
              `soak: ${done} requests: ${procs.map((p) => `${p.label.split(' ').pop()}=${rssMb(p.pid)?.toFixed(0)}`).join(' ')}\n`,
            );
          }
        }
      }),
    );
    const loadSeconds = (Date.now() - loadStart) / 1000;
    sampleAll();
    agent.destroy();
    stretch = 3;
    await sleep(IDLE_MS);
    sampleAll();
    clearInterval(sampler);
    const events = await pendingEvents();
    const errorLines = kongErrorLines(kongPrefix);

    const rows: Array<Array<string | number>> = [];
    const growing: string[] = [];
    for (const p of procs) {
      const [, first, second, idle] = bands.get(p.pid)!;
      let verdict = 'gone';
      if (first && second) {
        const slack = (b: Band) => Math.max(SLACK_MB, b.max * SLACK_FRACTION);
        const floorRise = second.min - first.min;
        const ceilingRise = second.max - first.max;
        const idleAbove = idle ? idle.max - first.max : 0;
        const flat =
          floorRise <= slack(first) && ceilingRise <= slack(first) && idleAbove <= slack(first);
        verdict = flat ? 'flat' : '**grows**';
        if (!flat) growing.push(`${p.label} (pid ${p.pid})`);
      } else {
        growing.push(`${p.label} (pid ${p.pid}, gone)`);
      }
      const [w, f, sec, i] = bands.get(p.pid)!;
      rows.push([
        p.label,
        ready.get(p.pid)?.toFixed(0) ?? '—',
        band(w),
        band(f),
        band(sec),
        band(i),
        first && second
          ? `${second.min - first.min >= 0 ? '+' : ''}${(second.min - first.min).toFixed(0)} / ${second.max - first.max >= 0 ? '+' : ''}${(second.max - first.max).toFixed(0)}`
          : '—',
        verdict,
      ]);
    }
    const openEvents = Object.entries(events).filter(([, n]) => n !== 0);
    const statusLine = [...statuses.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([s, n]) => `${s === -1 ? 'connection error' : s}: ${n}`)
      .join(', ');
    const ok = growing.length === 0 && openEvents.length === 0;
    const samplesTaken = [...bands.values()][0]?.reduce((n, b) => n + (b?.n ?? 0), 0) ?? 0;
    writeSection(
      'soak',
      [
        '## Soak: 100,000 requests through `npm start`',
        '',
        `Command: \`SOAK_REQUESTS=${REQUESTS} SOAK_CONCURRENCY=${CONCURRENCY} npm run soak\` (bench/soak.ts): the`,
        "README's `npm start` on ports of its own, then a mix of chats of two tenants (cacheable,",
        'not, streamed), embeddings, model lists, a forbidden tool, malformed JSON, no key, a wrong',
        'key, an empty body, a `__proto__` body and an unknown path, from',
        `${CONCURRENCY} keep-alive connections. ${banner.replace(/\s*\(.*$/, '')}.`,
        '',
        `${REQUESTS} requests in ${loadSeconds.toFixed(0)} s (${(REQUESTS / loadSeconds).toFixed(0)} req/s); statuses: ${statusLine}.`,
        serverErrors.size > 0
          ? `The 5xx answers by error code: ${[...serverErrors.entries()].map(([k, n]) => `${k}: ${n}`).join(', ')}.`
          : 'No 5xx answer.',
        '',
        `RSS in MB of every process of the stack, sampled every ${SAMPLE_MS / 1000} s (${samplesTaken} samples a process): the`,
        'band (lowest–highest) it moved in during each stretch. A garbage-collected process saws',
        "between collections (a plugin server's V8 heap grows by tens of MB of garbage before a",
        'full collection frees it), so one sample says little; a leak lifts the whole band. Flat',
        'means the floor and the ceiling of the second half are within',
        `${SLACK_MB} MB or ${SLACK_FRACTION * 100} % of the first half's, and the idle pause stays under that ceiling too.`,
        '',
        table(
          ['process', 'ready', ...stretches, 'second half − first: floor / ceiling MB', 'verdict'],
          rows,
        ),
        '',
        errorLines === undefined
          ? "Kong's error log: not found."
          : errorLines.size === 0
            ? "Kong's error log: no line at level error or above."
            : `Kong's error log, lines at level error or above by message (first ${ERROR_KINDS} kinds):\n\n${table(
                ['lines', 'message'],
                [...errorLines.entries()]
                  .sort((a, b) => b[1] - a[1])
                  .slice(0, ERROR_KINDS)
                  .map(([m, n]) => [n, `\`${m}\``]),
              )}`,
        '',
        `Open events in the plugin servers at the end (kta_pluginserver_pending_events): ${Object.values(
          events,
        )
          .map((n) => n ?? '?')
          .join(', ')}.`,
        '',
        ok
          ? '**Every process is flat; no event is left open.**'
          : `**Not flat: ${[...growing, ...openEvents.map(([p]) => `events open on :${p}`)].join(', ')}.**`,
        '',
        `_${new Date().toISOString()}; whole run ${((Date.now() - t0) / 1000).toFixed(0)} s_`,
      ].join('\n'),
    );
    process.stdout.write(
      `soak: ${ok ? 'flat' : 'NOT flat'}; statuses ${statusLine}; see docs/benchmarks.md\n`,
    );
    process.exitCode = ok ? 0 : 1;
  } finally {
    await stop();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`soak failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(2);
});
