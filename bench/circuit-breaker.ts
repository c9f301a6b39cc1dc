/**
 * circuit-breaker under an outage of tenant A's upstream (fails hard: 500; or hangs until
 * Kong's read timeout): requests that reached A's upstream before the breaker opened, time to
 * open, and tenant B's p99 (healthy upstream, same gateway) during A's outage ÷ before it,
 * measured in one run, on the real Kong 3.9.3 when installed and on the harness.
 * Run: `npm run bench -- circuit-breaker` (or `npx tsx bench/circuit-breaker.ts` after a build).
 */
import os from 'node:os';
import { locateKong } from '../kong-runner/index';
import { Closers, send } from '../test/helpers/frontdoor';
import {
  BREAKER,
  BULKHEAD,
  READ_TIMEOUT_MS,
  startBreakerDoor,
  type BreakerDoor,
  type TenantName,
} from '../test/helpers/breaker-door';
import { percentile, table, writeSection } from './report';

/** Concurrent closed-loop clients of B; A sends at a fixed rate (open loop), healthy or not. */
const B_CLIENTS = 4;
const A_RPS = Number(process.env.BENCH_A_RPS ?? 40);
/** Each phase is bounded in time and count; only 127.0.0.1 is reached. */
const PHASE_MS = Number(process.env.BENCH_PHASE_MS ?? 6000);
const MAX_REQUESTS = 3000;

interface Timed {
  at: number;
  ms: number;
  status: number;
  code: string | null;
}

async function timedAsk(door: BreakerDoor, tenant: TenantName): Promise<Timed> {
  const t0 = performance.now();
  const r = await door.ask(tenant);
  const code =
    r.status >= 400 ? ((r.json as { error?: { code?: string } })?.error?.code ?? null) : null;
  return { at: Date.now(), ms: performance.now() - t0, status: r.status, code };
}

/** `clients` closed loops of `tenant` until `stop()` says so (or the count bound). */
async function drive(
  door: BreakerDoor,
  tenant: TenantName,
  clients: number,
  stop: () => boolean,
): Promise<Timed[]> {
  const out: Timed[] = [];
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (!stop() && out.length < MAX_REQUESTS) out.push(await timedAsk(door, tenant));
    }),
  );
  return out;
}

/** `tenant` at a fixed rate until `stop()`: requests do not wait for each other. */
async function pace(
  door: BreakerDoor,
  tenant: TenantName,
  rps: number,
  stop: () => boolean,
): Promise<Timed[]> {
  const pending: Array<Promise<Timed>> = [];
  const t0 = Date.now();
  while (!stop() && pending.length < MAX_REQUESTS) {
    pending.push(timedAsk(door, tenant));
    const next = t0 + (pending.length * 1000) / rps;
    await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
  }
  return Promise.all(pending);
}

function p99(xs: Timed[]): number {
  const ok = xs
    .filter((x) => x.status === 200)
    .map((x) => x.ms)
    .sort((a, b) => a - b);
  return percentile(ok, 99);
}

interface Scenario {
  name: string;
  tenant: TenantName;
  failure: { mode: 'status'; status: number } | { mode: 'timeout' };
}

interface Result {
  gateway: string;
  scenario: string;
  reachedBeforeOpen: number;
  timeToOpenMs: number;
  shortCircuited: number;
  bulkheadRefused: number;
  bBefore: number;
  bDuring: number;
  bDuringOk: number;
  bDuringTotal: number;
}

async function runScenario(door: BreakerDoor, gateway: string, s: Scenario): Promise<Result> {
  door.dedicated.reset();
  door.upstream.reset();
  // Before: A at its rate on its healthy upstream, B beside it.
  const t0 = Date.now();
  const stop0 = () => Date.now() - t0 > PHASE_MS / 2;
  const [, before] = await Promise.all([
    pace(door, s.tenant, A_RPS, stop0),
    drive(door, 'globex', B_CLIENTS, stop0),
  ]);

  // During: A's upstream goes down; A keeps its rate, B keeps going.
  door.dedicated.reset();
  door.dedicated.configure({ failure: s.failure });
  const start = Date.now();
  const stop = () => Date.now() - start > PHASE_MS;
  const [a, during] = await Promise.all([
    pace(door, s.tenant, A_RPS, stop),
    drive(door, 'globex', B_CLIENTS, stop),
  ]);
  const firstOpen = a
    .filter((x) => x.code === 'upstream_circuit_open')
    .reduce((m, x) => Math.min(m, x.at), Infinity);
  const reached = door.dedicated.received.filter(
    (r) => r.headers['x-tenant-id'] === s.tenant && r.at <= firstOpen,
  ).length;
  door.dedicated.configure({ failure: null });
  return {
    gateway,
    scenario: s.name,
    reachedBeforeOpen: reached,
    timeToOpenMs: Number.isFinite(firstOpen) ? firstOpen - start : NaN,
    shortCircuited: a.filter((x) => x.code?.startsWith('upstream_circuit_')).length,
    bulkheadRefused: a.filter((x) => x.code === 'tenant_bulkhead_full').length,
    bBefore: p99(before),
    bDuring: p99(during),
    bDuringOk: during.filter((x) => x.status === 200).length,
    bDuringTotal: during.length,
  };
}

async function main(): Promise<void> {
  const gateways = locateKong() ? ['kong', 'harness'] : ['harness'];
  const scenarios: Scenario[] = [
    { name: 'A fails hard (500)', tenant: 'alpha', failure: { mode: 'status', status: 500 } },
    {
      name: `A hangs (read timeout ${READ_TIMEOUT_MS} ms)`,
      tenant: 'bravo',
      failure: { mode: 'timeout' },
    },
  ];
  const results: Result[] = [];
  for (const gw of gateways) {
    process.env.GATEWAY = gw;
    const closers = new Closers();
    try {
      const door = await startBreakerDoor(closers.add);
      // warm up: plugin instances started, connections made
      for (let i = 0; i < 20; i++) await send(`${door.url}/v1/models`);
      for (let i = 0; i < 10; i++) {
        for (const t of ['globex', ...scenarios.map((x) => x.tenant)] as TenantName[]) {
          await door.ask(t);
        }
      }
      for (const s of scenarios) {
        const r = await runScenario(door, gw, s);
        results.push(r);
        process.stdout.write(`${JSON.stringify(r)}\n`);
      }
    } finally {
      await closers.closeAll();
    }
  }
  const f = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : 'n/a');
  writeSection(
    'circuit-breaker',
    [
      '## circuit-breaker: tenant A’s upstream down, tenant B beside it',
      '',
      'Command: `npm run bench -- circuit-breaker`. One gateway node; A on its plan’s dedicated',
      `upstream (breaker: ${BREAKER.consecutive_failures} consecutive failures, half-open after ${BREAKER.half_open_after_ms} ms;`,
      `bulkhead ${BULKHEAD.max_in_flight} in flight + queue ${BULKHEAD.queue}) sending ${A_RPS} req/s open loop;`,
      `B on the service's healthy upstream, ${B_CLIENTS} closed-loop clients. Before: ${PHASE_MS / 2} ms with A's`,
      `upstream healthy; during: ${PHASE_MS} ms of A's outage, A still at ${A_RPS} req/s. "reached before open": requests A's upstream received before`,
      'the first `upstream_circuit_open` answer (with concurrent clients, requests already in flight when',
      'the threshold is hit still arrive: the verdict comes only from the log phase).',
      `Load average when the run ended: ${os.loadavg()[0]?.toFixed(1)} on ${os.cpus().length} cores — B's p99`,
      'moves with whatever else the machine runs; read the ratio with that in mind.',
      '',
      table(
        [
          'gateway',
          'scenario',
          'reached A’s upstream before open',
          'time to open (ms)',
          'A short-circuited',
          'A bulkhead 503s',
          'B p99 before (ms)',
          'B p99 during (ms)',
          'B p99 during ÷ before',
          'B ok during',
        ],
        results.map((r) => [
          r.gateway,
          r.scenario,
          r.reachedBeforeOpen,
          f(r.timeToOpenMs),
          r.shortCircuited,
          r.bulkheadRefused,
          f(r.bBefore),
          f(r.bDuring),
          (r.bDuring / r.bBefore).toFixed(2),
          `${r.bDuringOk}/${r.bDuringTotal}`,
        ]),
      ),
    ].join('\n'),
  );
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
