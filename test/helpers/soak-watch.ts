/**
 * What the soak watches while its load runs (test/helpers/soak-chain.ts): the RSS of every
 * process of the three nodes (and, for information, of the shared services and of the load
 * generator), each plugin-server process's event-loop lag p99 and open events from its metrics
 * port, and Kong's error log of every node.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { KongGateway } from '../../kong-runner/index';
import type { SoakCluster } from './soak-chain';

export interface WatchedProcess {
  pid: number;
  label: string;
  /** A process of the three nodes (judged flat or not); else shown for information. */
  judged: boolean;
}

function readProc(pid: number, file: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return undefined;
  }
}

export function rssMb(pid: number): number | undefined {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readProc(pid, 'status') ?? '');
  return m ? Number(m[1]) / 1024 : undefined;
}

function allPids(): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
}

function parentOf(pid: number): number | undefined {
  const stat = readProc(pid, 'stat');
  // pid (comm) state ppid …: comm may hold spaces and parentheses; ppid follows the last ')'.
  return stat ? Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) : undefined;
}

function cmdline(pid: number): string {
  return (readProc(pid, 'cmdline') ?? '').split('\0').filter(Boolean).join(' ');
}

/** `root` and every process below it. */
function tree(root: number, pids: number[]): number[] {
  const out = [root];
  for (let i = 0; i < out.length; i++)
    for (const p of pids) if (parentOf(p) === out[i] && !out.includes(p)) out.push(p);
  return out;
}

function nodeLabel(cmd: string): string {
  if (/kong-js-pluginserver/.test(cmd)) {
    const sock = /--sock-name\s+(\S+?)\.sock/.exec(cmd)?.[1];
    return `plugin server ${sock ?? ''}`.trim();
  }
  if (/^nginx: master/.test(cmd)) return 'nginx master';
  if (/^nginx: worker/.test(cmd)) return 'nginx worker';
  return cmd.slice(0, 40);
}

/**
 * Every process of the three nodes: on Kong the nginx master's tree (workers, and the plugin
 * servers the workers spawn); on the harness the plugin servers. Then, not judged: this process
 * (the load generator and the mock upstream), Redis and Milvus (shared with other work).
 */
export function soakProcesses(cluster: SoakCluster): WatchedProcess[] {
  const pids = allPids();
  const out: WatchedProcess[] = [];
  cluster.nodes.forEach((n, i) => {
    const where = cluster.kind === 'kong' ? `node ${i} (${n.workers} w)` : `node ${i}`;
    let found: number[];
    if (cluster.kind === 'kong') {
      const prefix = (n.gateway as KongGateway).prefix;
      const master = Number(readFileSync(path.join(prefix, 'pids', 'nginx.pid'), 'utf8').trim());
      found = tree(master, pids);
    } else {
      found = [
        ...new Set(Object.keys(n.metricsPorts).map((p) => n.gateway.pluginServerInfo(p).pid)),
      ];
    }
    for (const pid of found) {
      if (rssMb(pid) === undefined) continue;
      out.push({ pid, label: `${where}: ${nodeLabel(cmdline(pid))}`, judged: true });
    }
  });
  out.push({ pid: process.pid, label: 'load generator + mock upstream', judged: false });
  const redisPorts = new Set(
    [...cluster.redisUrl.matchAll(/:(\d{2,5})/g)].map((m) => m[1]).filter(Boolean),
  );
  for (const pid of pids) {
    const cmd = cmdline(pid);
    const redis = /^redis-server \S+:(\d+)/.exec(cmd);
    if (redis?.[1] && redisPorts.has(redis[1]))
      out.push({ pid, label: `Redis :${redis[1]} (shared)`, judged: false });
    else if (/milvus run standalone/.test(cmd))
      out.push({ pid, label: 'Milvus (shared)', judged: false });
  }
  return out;
}

/** One process's samples in one stretch of the run: the band its RSS moved in. */
export interface Band {
  min: number;
  max: number;
  n: number;
}

/** Growth allowed between the halves of the run: noise, not a leak. */
const SLACK_FRACTION = 0.15;
const SLACK_MB = 32;
/** RSS above its ready value that marks a process's first busy moment (its own warm-up starts). */
const BUSY_MB = 8;
/** A process's own warm-up, as a fraction of the load: the fixed warm-up stretch's length. */
const WARM_UP_FRACTION = 0.1;

export const STRETCHES = ['warm-up (0–10 %)', '10–55 %', '55–100 %', 'idle'] as const;

/** One RSS sample of one process. */
interface Sample {
  t: number;
  mb: number;
  stretch: number;
}

export interface RssVerdict {
  flat: boolean;
  /** The judged window's second half's floor minus its first half's (MB). */
  floorRise: number;
  /** The same for the ceilings: shown, not judged (the sawtooth of collections moves it). */
  ceilingRise: number;
  /** The idle pause's floor minus the first half's. */
  idleFloorRise: number;
  /** Where the judged window starts, as a fraction of the load (the process's own warm-up end). */
  from: number;
}

/**
 * RSS bands per process and stretch, and the samples behind them. A garbage-collected
 * process's RSS saws between collections (a plugin server's V8 heap by tens of MB, its ceiling
 * set by when a collection happened to run); a leak lifts the floor, what is left after each
 * collection, and keeps it there when idle. So the verdict judges floors: each process from
 * the end of its own warm-up (an nginx worker that got its first keep-alive connection half-way
 * through the load warms up then, as its peers did at the start), the rest of the load cut in
 * two halves, the second half's floor and the idle pause's within the slack of the first's.
 */
export class RssBands {
  readonly bands = new Map<number, Array<Band | undefined>>();
  readonly ready = new Map<number, number | undefined>();
  private readonly series = new Map<number, Sample[]>();
  stretch = 0;
  constructor(readonly procs: WatchedProcess[]) {
    for (const p of procs) {
      this.bands.set(p.pid, []);
      this.series.set(p.pid, []);
      this.ready.set(p.pid, rssMb(p.pid));
    }
  }
  sample(now = Date.now()): void {
    for (const p of this.procs) {
      const mb = rssMb(p.pid);
      if (mb !== undefined) this.record(p.pid, mb, now);
    }
  }
  /** One sample of `pid` (the sampler's, or a test's). */
  record(pid: number, mb: number, now = Date.now()): void {
    const row = this.bands.get(pid);
    if (!row) return;
    const b = row[this.stretch];
    row[this.stretch] = b
      ? { min: Math.min(b.min, mb), max: Math.max(b.max, mb), n: b.n + 1 }
      : { min: mb, max: mb, n: 1 };
    this.series.get(pid)?.push({ t: now, mb, stretch: this.stretch });
  }
  /** Moves to stretch `s` (sampling once at the boundary). */
  enter(s: number, now = Date.now()): void {
    if (s === this.stretch) return;
    this.sample(now);
    this.stretch = s;
    this.sample(now);
  }
  verdict(pid: number): RssVerdict | undefined {
    const all = this.series.get(pid) ?? [];
    const load = all.filter((x) => x.stretch <= 2);
    const idle = all.filter((x) => x.stretch === 3);
    const first = load[0];
    const last = load[load.length - 1];
    if (!first || !last || last.t <= first.t) return undefined;
    const span = last.t - first.t;
    // Its own warm-up: from its first busy sample (or the load's start), a tenth of the load.
    const base = this.ready.get(pid) ?? first.mb;
    const busy = load.find((x) => x.mb >= base + BUSY_MB) ?? first;
    const from = Math.max(first.t + WARM_UP_FRACTION * span, busy.t + WARM_UP_FRACTION * span);
    const judged = load.filter((x) => x.t >= from);
    if (judged.length < 4) return undefined;
    const mid = from + (last.t - from) / 2;
    const halves = [judged.filter((x) => x.t < mid), judged.filter((x) => x.t >= mid)];
    const [a, b] = halves.map((h) => h.map((x) => x.mb));
    if (!a?.length || !b?.length) return undefined;
    const slack = Math.max(SLACK_MB, Math.max(...a) * SLACK_FRACTION);
    const floorRise = Math.min(...b) - Math.min(...a);
    const idleFloorRise = idle.length ? Math.min(...idle.map((x) => x.mb)) - Math.min(...a) : 0;
    return {
      flat: floorRise <= slack && idleFloorRise <= slack,
      floorRise,
      ceilingRise: Math.max(...b) - Math.max(...a),
      idleFloorRise,
      from: (from - first.t) / span,
    };
  }
  /** Judged processes that grew, vanished, or got busy too late to be judged. */
  growing(): string[] {
    return this.procs
      .filter((p) => p.judged && !this.verdict(p.pid)?.flat)
      .map(
        (p) =>
          `${p.label} (pid ${p.pid}${this.verdict(p.pid) ? '' : ', not judged: gone or busy too late'})`,
      );
  }
  static readonly slackText = `${SLACK_MB} MB or ${SLACK_FRACTION * 100} %`;
  static readonly warmUpText = `${WARM_UP_FRACTION * 100} % of the load`;
  static readonly busyText = `${BUSY_MB} MB`;
}

const band = (b: Band | undefined): string => (b ? `${b.min.toFixed(0)}–${b.max.toFixed(0)}` : '—');

/** The report's rows: process, at ready, each stretch's band, the rise, the verdict. */
export function rssRows(r: RssBands): Array<Array<string | number>> {
  return r.procs.map((p) => {
    const b = r.bands.get(p.pid) ?? [];
    const v = r.verdict(p.pid);
    const signed = (n: number) => `${n >= 0 ? '+' : ''}${n.toFixed(0)}`;
    return [
      p.label,
      r.ready.get(p.pid)?.toFixed(0) ?? '—',
      ...STRETCHES.map((_, i) => band(b[i])),
      v ? `${(v.from * 100).toFixed(0)} %` : '—',
      v ? `${signed(v.floorRise)} / ${signed(v.idleFloorRise)} (${signed(v.ceilingRise)})` : '—',
      !p.judged
        ? v?.flat === false
          ? 'grows (not judged)'
          : 'not judged'
        : v?.flat
          ? 'flat'
          : '**grows**',
    ];
  });
}

/** One plugin-server process and the metrics port it answers on. */
export interface LagTarget {
  label: string;
  pid: number;
  port: number;
}

/** Each distinct plugin-server process of each node, by one of the ports it serves. */
export function lagTargets(cluster: SoakCluster): LagTarget[] {
  const out: LagTarget[] = [];
  cluster.nodes.forEach((n, i) => {
    const byPid = new Map<number, { port: number; plugins: string[] }>();
    for (const [plugin, port] of Object.entries(n.metricsPorts)) {
      const pid = n.gateway.pluginServerInfo(plugin).pid;
      const entry = byPid.get(pid) ?? { port, plugins: [] };
      entry.plugins.push(plugin);
      byPid.set(pid, entry);
    }
    for (const [pid, { port, plugins }] of byPid) {
      const what = plugins.length > 1 ? `the chain (${plugins.length} plugins)` : plugins[0];
      out.push({ label: `node ${i}: plugin server of ${what}`, pid, port });
    }
  });
  return out;
}

/** One plugin server's metrics; asked up to three times, since the machine may be busy with other tests. */
async function scrape(port: number): Promise<string | undefined> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`, {
        signal: AbortSignal.timeout(5000),
      });
      if (res.ok) return await res.text();
    } catch {
      // asked again below
    }
  }
  return undefined;
}

const gauge = (text: string | undefined, name: string): number | undefined => {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text ?? '');
  return m?.[1] !== undefined ? Number(m[1]) : undefined;
};

/**
 * Event-loop lag p99 of every plugin-server process, read from prom-client's default metrics
 * (`nodejs_eventloop_lag_p99_seconds`). prom-client resets its delay histogram at every
 * collection, so each scrape is the p99 of the window since the previous one: the soak keeps the
 * largest window p99 and all of them (for a median).
 */
export class LagWatch {
  readonly windows = new Map<number, number[]>();
  constructor(readonly targets: LagTarget[]) {
    for (const t of targets) this.windows.set(t.pid, []);
  }
  /** Reads every process once; `keep` false only resets the windows (before the load). */
  async sample(keep = true): Promise<void> {
    await Promise.all(
      this.targets.map(async (t) => {
        const p99 = gauge(await scrape(t.port), 'nodejs_eventloop_lag_p99_seconds');
        if (keep && p99 !== undefined && Number.isFinite(p99)) this.windows.get(t.pid)?.push(p99);
      }),
    );
  }
  summary(): Array<{ target: LagTarget; windows: number; maxMs: number; medianMs: number }> {
    return this.targets.map((target) => {
      const w = [...(this.windows.get(target.pid) ?? [])].sort((a, b) => a - b);
      return {
        target,
        windows: w.length,
        maxMs: (w[w.length - 1] ?? NaN) * 1000,
        medianMs: (w[Math.floor(w.length / 2)] ?? NaN) * 1000,
      };
    });
  }
}

/** `kta_pluginserver_pending_events` of every plugin-server process (undefined: unreadable). */
export async function pendingEvents(
  targets: LagTarget[],
): Promise<Array<{ target: LagTarget; open: number | undefined }>> {
  return Promise.all(
    targets.map(async (target) => ({
      target,
      open: gauge(await scrape(target.port), 'kta_pluginserver_pending_events'),
    })),
  );
}

/**
 * Bulkhead slots held on each node (circuit-breaker's occupancy gauge, every tenant summed,
 * read from circuit-breaker's metrics port). After the load has settled, any slot still held is
 * one whose log event never released it.
 */
export async function bulkheadSlotsHeld(
  cluster: SoakCluster,
): Promise<Array<{ node: number; held: number | undefined }>> {
  return Promise.all(
    cluster.nodes.map(async (n, node) => {
      const port = n.metricsPorts['circuit-breaker'];
      const text = port === undefined ? undefined : await scrape(port);
      if (!text?.includes('# TYPE circuit_breaker_bulkhead_in_flight gauge'))
        return { node, held: undefined };
      let held = 0;
      for (const m of text.matchAll(/^circuit_breaker_bulkhead_in_flight\{[^}]*\} (\S+)$/gm))
        held += Number(m[1]);
      return { node, held };
    }),
  );
}

/**
 * A line Kong wrote about a plugin server of ours: its RPC (mp_rpc.lua, plugin_servers), its
 * socket, its process, or a plugin of the chain logging through the PDK (`[tenant-auth] …`).
 * The plugin servers' own output reaches Kong's log at info level (process.lua grab_logs), below
 * the notice level the nodes run at.
 */
const PLUGIN_SERVER_LINE =
  /mp_rpc\.lua|plugin_servers|pluginserver|\.sock\b|\[(tenant-auth|tenant-ratelimit|tenant-cache|token-meter|retrieval-injector|circuit-breaker)\]/;

export interface ErrorLines {
  /** Lines at level error or above, by message (request-specific parts cut off). */
  all: Map<string, number>;
  /** Those that come from a plugin server: the soak fails on one. */
  pluginServer: Map<string, number>;
}

/** Kong's error log of every node (undefined on the harness, which has none). */
export function errorLines(cluster: SoakCluster): ErrorLines | undefined {
  if (cluster.kind !== 'kong') return undefined;
  const all = new Map<string, number>();
  const pluginServer = new Map<string, number>();
  for (const n of cluster.nodes) {
    for (const line of (n.gateway as KongGateway).errorLog().split('\n')) {
      const m = /\[(error|crit|alert|emerg)\] \d+#\d+: (?:\*\d+ )?(.*)$/.exec(line);
      if (!m?.[2]) continue;
      const message = m[2]
        .replace(/, (client|context|request|upstream|host|server|request_id): .*$/, '')
        .replace(/\b[0-9a-f]{32}\b|\b[0-9a-f-]{36}\b/g, '<id>')
        .replace(/\/tmp\/\S+?\//g, '<prefix>/')
        .replace(/\d+/g, 'N')
        .slice(0, 160);
      all.set(message, (all.get(message) ?? 0) + 1);
      if (PLUGIN_SERVER_LINE.test(m[2]))
        pluginServer.set(message, (pluginServer.get(message) ?? 0) + 1);
    }
  }
  return { all, pluginServer };
}
