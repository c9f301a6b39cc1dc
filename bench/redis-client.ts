/**
 * The Redis client's own cost per call, before and after its deadline stopped making a timer
 * per command (lib/redis/deadline-sweep.ts), in one run against the same Redis.
 *
 * - **timer per call** (before): node-redis with its per-command `timeout` (an
 *   AbortSignal.timeout each; node-redis 6.3 sets 5 s when not told) and the old `withDeadline`
 *   (a setTimeout raced against the call, cleared in `finally`), the code as it was;
 * - **sweep** (now): `createRedis` and `withDeadline` as the plugins use them.
 * Both send the same EVALSHA (a token bucket, test/fixtures/redis/token-bucket-1.lua) and GET, one
 * call at a time (a plugin's access phase) and 16 at once; rounds alternate so a change in the
 * machine's load falls on both sides. CPU is this process's (process.cpuUsage): node-redis's
 * encoding and parsing, the socket, the promises, the timers (until every timer a round made has
 * fired); Redis's own time is not in it.
 *
 * Command: `npx tsx bench/redis-client.ts` (REDIS_URL, default redis://127.0.0.1:6379), or
 * `npm run bench -- redis-client`; writes its section of docs/benchmarks.md.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { createClient } from 'redis';
import {
  closeAllRedis,
  createRedis,
  DEFAULT_COMMAND_TIMEOUT_MS,
  MAX_PENDING_COMMANDS,
  RedisDeadlineError,
  waitForRedis,
  withDeadline,
  type RedisClient,
} from '../lib/redis/client';
import { tokenBucketScript } from '../test/fixtures/redis/token-bucket';
import { table, writeSection } from './report';

const URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const CALLS = Number(process.env.BENCH_REDIS_CALLS ?? 4000);
const ROUNDS = Number(process.env.BENCH_REDIS_ROUNDS ?? 6);
const CONCURRENCY = 16;
const PREFIX = `bench-redis-client:${randomBytes(4).toString('hex')}`;

/** The old withDeadline: a timer and a race per call. */
function timerDeadline<T>(command: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new RedisDeadlineError(DEFAULT_COMMAND_TIMEOUT_MS)),
      DEFAULT_COMMAND_TIMEOUT_MS,
    );
  });
  return Promise.race([command, deadline]).finally(() => clearTimeout(timer));
}

type Call = (i: number) => Promise<unknown>;

interface Path {
  readonly name: string;
  readonly script: Call;
  readonly get: Call;
}

const script = tokenBucketScript();
const args = (i: number) => ({
  keys: [`${PREFIX}:{bucket-${i % 64}}`],
  // capacity, refill per second, cost: a bucket that never runs dry
  arguments: ['1000000', '1000000', '1'],
});

/** µs of this process's CPU per call, over `CALLS` calls `width` at a time. */
async function cpuPerCall(call: Call, width: number): Promise<number> {
  let next = 0;
  const start = process.cpuUsage();
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < CALLS) await call(next++);
    }),
  );
  // Timers outlive their calls (an AbortSignal.timeout fires at its deadline, answered or not;
  // the sweep ticks once more): their cost is counted with the calls that made them, not with
  // the next measurement.
  await new Promise((resolve) => setTimeout(resolve, DEFAULT_COMMAND_TIMEOUT_MS + 100));
  const used = process.cpuUsage(start);
  return (used.user + used.system) / CALLS;
}

async function main(): Promise<void> {
  const sweep = createRedis({ url: URL });
  await waitForRedis(sweep, 5000);
  const timerClient = createClient({
    url: URL,
    RESP: 3,
    disableOfflineQueue: true,
    commandsQueueMaxLength: MAX_PENDING_COMMANDS,
    commandOptions: { timeout: DEFAULT_COMMAND_TIMEOUT_MS },
  });
  await timerClient.connect();
  const evalSha = (c: RedisClient | typeof timerClient, i: number) =>
    c.evalSha(script.sha1, args(i)).catch(async (e: unknown) => {
      if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e;
      return c.eval(script.source, args(i));
    });
  const paths: Path[] = [
    {
      name: 'timer per call (before)',
      script: (i) => timerDeadline(evalSha(timerClient, i)),
      get: (i) => timerDeadline(timerClient.get(`${PREFIX}:absent-${i % 64}`)),
    },
    {
      name: 'sweep (now)',
      script: (i) => withDeadline(sweep, evalSha(sweep, i)),
      get: (i) => withDeadline(sweep, sweep.get(`${PREFIX}:absent-${i % 64}`)),
    },
  ];
  const kinds = [
    ['EVALSHA token bucket, c=1', 'script', 1],
    ['GET, c=1', 'get', 1],
    [`EVALSHA token bucket, c=${CONCURRENCY}`, 'script', CONCURRENCY],
  ] as const;
  const samples = new Map<string, number[]>();
  try {
    for (const p of paths) for (const [, k] of kinds) await cpuPerCall(p[k], 1); // warm up
    for (let r = 0; r < ROUNDS; r++) {
      for (const p of r % 2 === 0 ? paths : [...paths].reverse()) {
        for (const [label, k, width] of kinds) {
          const key = `${label}\u0000${p.name}`;
          const list = samples.get(key) ?? [];
          list.push(await cpuPerCall(p[k], width));
          samples.set(key, list);
        }
      }
    }
  } finally {
    // The buckets: this run's keys only.
    for await (const keys of sweep.scanIterator({ MATCH: `${PREFIX}:*`, COUNT: 500 })) {
      if (keys.length) await sweep.del(keys);
    }
    await timerClient.close();
    await closeAllRedis();
  }
  const median = (xs: number[] = []) =>
    [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const rows = kinds.map(([label]) => {
    const before = median(samples.get(`${label}\u0000${paths[0]?.name}`));
    const now = median(samples.get(`${label}\u0000${paths[1]?.name}`));
    return [label, before.toFixed(1), now.toFixed(1), (now / before).toFixed(2)];
  });
  const load = os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');
  const head = [
    'calls',
    'timer per call (before): µs CPU / call',
    'sweep (now): µs CPU / call',
    'now ÷ before',
  ];
  console.log(table(head, rows));
  console.log(`load average ${load}`);
  if (process.env.BENCH_NO_WRITE === '1') return;
  writeSection(
    'redis-client',
    [
      '### The Redis client: a deadline without a timer per call',
      '',
      'Command: `npx tsx bench/redis-client.ts` (bench/redis-client.ts). The CPU of one Node',
      "process per Redis call (node-redis's encoding and parsing, the socket, promises, timers",
      "until every timer a round made has fired; not Redis's), median of " +
        `${ROUNDS} alternating rounds of ${CALLS} calls each, against`,
      "the same Redis: **before**, node-redis's per-command `timeout` (an `AbortSignal.timeout` per",
      'command) and a `setTimeout` raced against every call; **now**, one deadline sweep per client',
      '(lib/redis/deadline-sweep.ts). Same deadline (250 ms), same refusals',
      '(test/integration/redis-client.test.ts, test/plugins/faults-redis.test.ts).',
      '',
      table(head, rows),
      '',
      `Load average during the run: ${load}.`,
    ].join('\n'),
  );
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
