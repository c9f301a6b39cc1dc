/**
 * `[SOAK_REQUESTS=N SOAK_CONCURRENCY=C] npm run soak` (scripts/bench.sh soak; not part of a plain
 * `npm run bench`: it takes about 20 minutes): the front door as `npm start` runs it (the
 * README's command, on ports of its own), under N requests (100,000 by default) of a mix a
 * careless or hostile client sends: chats of two tenants (cacheable, not, streamed), model
 * lists, a refused tool, malformed JSON, no key, an empty body. Samples the RSS of every
 * process of the stack (the gateway's nginx and plugin servers, the front door's node process
 * with the mock upstream, Redis, Milvus) after a warm-up, along the way and after an idle
 * pause, and each plugin server's open events. Fails (exit 1) when a process keeps growing
 * after the warm-up or an event stays open; writes its figures to docs/benchmarks.md.
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
        res.on('data', () => undefined);
        res.on('end', () => resolve(res.statusCode ?? 0));
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
    const marks = [0.1, 0.25, 0.5, 0.75, 1];
    const samples: Array<{ at: string; rss: Map<number, number | undefined> }> = [];
    const sample = (at: string) => {
      samples.push({ at, rss: new Map(procs.map((p) => [p.pid, rssMb(p.pid)])) });
      process.stdout.write(
        `soak: ${at}: ${procs.map((p) => `${p.label.split(' ').pop()}=${rssMb(p.pid)?.toFixed(0)}`).join(' ')}\n`,
      );
    };
    sample('ready');
    const statuses = new Map<number, number>();
    let next = 0;
    let done = 0;
    let markIdx = 0;
    const loadStart = Date.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        for (;;) {
          const i = next++;
          if (i >= REQUESTS) return;
          const s = await nth(i);
          statuses.set(s, (statuses.get(s) ?? 0) + 1);
          done++;
          while (markIdx < marks.length && done >= (marks[markIdx] ?? 1) * REQUESTS) {
            sample(`${Math.round((marks[markIdx] ?? 1) * 100)} % (${done} requests)`);
            markIdx++;
          }
        }
      }),
    );
    const loadSeconds = (Date.now() - loadStart) / 1000;
    agent.destroy();
    await sleep(15_000);
    sample('after 15 s idle');
    const events = await pendingEvents();

    const warm = samples.find((s) => s.at.startsWith('10 %'))!;
    const end = samples.at(-1)!;
    const rows: Array<Array<string | number>> = [];
    const growing: string[] = [];
    for (const p of procs) {
      const a = warm.rss.get(p.pid);
      const b = end.rss.get(p.pid);
      const grew = a !== undefined && b !== undefined ? b - a : undefined;
      const flat = grew !== undefined && grew <= Math.max(SLACK_MB, a! * SLACK_FRACTION);
      if (!flat) growing.push(`${p.label} (pid ${p.pid})`);
      rows.push([
        p.label,
        ...samples.map((s) => s.rss.get(p.pid)?.toFixed(0) ?? 'gone'),
        grew === undefined ? '—' : `${grew >= 0 ? '+' : ''}${grew.toFixed(0)}`,
        flat ? 'flat' : '**grows**',
      ]);
    }
    const openEvents = Object.entries(events).filter(([, n]) => n !== 0);
    const statusLine = [...statuses.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([s, n]) => `${s === -1 ? 'connection error' : s}: ${n}`)
      .join(', ');
    const ok = growing.length === 0 && openEvents.length === 0;
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
        '',
        'RSS in MB of every process of the stack; "growth" is the end (after 15 s idle) minus the',
        `sample at 10 %, after the warm-up; flat means within ${SLACK_MB} MB or ${SLACK_FRACTION * 100} %.`,
        '',
        table(['process', ...samples.map((s) => s.at), 'growth MB', 'verdict'], rows),
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
