/**
 * The client's failure behaviour and the script loader's EVALSHA path, against private real
 * redis-server processes (these tests flush scripts, pause and kill the server, which must not
 * disturb the shared Redis other suites use). Serial: each test closes every client at the end.
 */
import test, { type ExecutionContext } from 'ava';
import { createHook } from 'node:async_hooks';
import { createClient } from 'redis';
import {
  closeAllRedis,
  createRedis,
  RedisDeadlineError,
  untilFirstConnected,
  waitForRedis,
  withDeadline,
} from '../../lib/redis/client';
import { isRedisUnavailable } from '../../lib/redis/errors';
import { createKeyspace } from '../../lib/redis/keys';
import { takeTokens, tokenBucketScript } from '../fixtures/redis/token-bucket';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { freePort, startPrivateRedis } from './private-redis';

const acme = parseTenantId('acme');
const limit = { capacity: 100, refillPerSecond: 1 };

function closeClientsAtEnd(t: ExecutionContext): void {
  t.teardown(closeAllRedis);
}

async function errorOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

/** `calls` per command from INFO commandstats, e.g. { evalsha: 2, eval: 1 }. */
async function commandCalls(url: string): Promise<Record<string, number>> {
  const admin = createClient({ url });
  await admin.connect();
  try {
    const info = await admin.info('commandstats');
    const calls: Record<string, number> = {};
    for (const m of info.matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)) {
      if (m[1] && m[2]) calls[m[1]] = Number(m[2]);
    }
    return calls;
  } finally {
    await admin.close();
  }
}

test.serial('scripts run by SHA, and are reloaded after SCRIPT FLUSH', async (t) => {
  const server = await startPrivateRedis(t);
  closeClientsAtEnd(t);
  const redis = createRedis({ url: server.url, commandTimeoutMs: 3000 });
  await waitForRedis(redis, 5000);
  const key = createKeyspace('it').rateBucket(acme, 'requests');
  const script = tokenBucketScript();

  // A fresh server has never seen the script: EVALSHA -> NOSCRIPT -> EVAL.
  t.true((await takeTokens(redis, key, limit)).allowed);
  t.is((await commandCalls(server.url)).eval, 1);
  t.deepEqual(await redis.scriptExists(script.sha1), [1]);

  // From now on the SHA is enough.
  t.true((await takeTokens(redis, key, limit)).allowed);
  t.true((await takeTokens(redis, key, limit)).allowed);
  const warm = await commandCalls(server.url);
  t.is(warm.eval, 1);
  t.true((warm.evalsha ?? 0) >= 2);

  // A flushed cache (restart, failover) is healed by one EVAL.
  await redis.scriptFlush();
  t.deepEqual(await redis.scriptExists(script.sha1), [0]);
  t.like(await takeTokens(redis, key, limit), { allowed: true, remaining: 96 });
  t.is((await commandCalls(server.url)).eval, 2);
  t.deepEqual(await redis.scriptExists(script.sha1), [1]);
});

test.serial('with Redis down, commands fail at once and the client heals itself', async (t) => {
  const port = await freePort();
  const logged: string[] = [];
  closeClientsAtEnd(t);
  const redis = createRedis({ url: `redis://127.0.0.1:${port}`, log: (m) => logged.push(m) });

  // Nothing listens yet: no queueing, an "unavailable" error right away.
  const offline = await errorOf(redis.ping());
  t.true(isRedisUnavailable(offline), String(offline));

  const server = await startPrivateRedis(t, port);
  await waitForRedis(redis, 10_000);
  t.is(await redis.ping(), 'PONG');

  await server.stop();
  const down = await errorOf(redis.ping());
  t.true(isRedisUnavailable(down), String(down));

  // The retry loop's 'error' events were logged once per outage, not thrown.
  t.regex(logged[0] ?? '', /unavailable, retrying in the background/);
  t.regex(logged[1] ?? '', /reconnected/);
  t.true(logged.slice(2).every((m) => m.includes('unavailable')) && logged.length <= 3);
});

test.serial('a Redis that answers late fails the call as unavailable', async (t) => {
  const server = await startPrivateRedis(t);
  closeClientsAtEnd(t);
  const redis = createRedis({ url: server.url, commandTimeoutMs: 100 });
  await waitForRedis(redis, 5000);

  const admin = createClient({ url: server.url });
  await admin.connect();
  t.teardown(() => admin.close());
  // Redis holds every other client's commands for 1 s.
  await admin.sendCommand(['CLIENT', 'PAUSE', '1000', 'ALL']);

  // The commands were written; node-redis's own timeout no longer covers them.
  const key = createKeyspace('it').rateBucket(acme, 'requests');
  const slowScript = await errorOf(takeTokens(redis, key, limit));
  t.true(slowScript instanceof RedisDeadlineError, String(slowScript));
  t.true(isRedisUnavailable(slowScript));
  const slowPing = await errorOf(withDeadline(redis, redis.ping()));
  t.true(isRedisUnavailable(slowPing), String(slowPing));
});

/** Timeout objects created while `fn` runs (setTimeout's, and AbortSignal.timeout's). */
async function timersMadeBy(fn: () => Promise<unknown>): Promise<number> {
  let made = 0;
  const hook = createHook({
    init(_id, type) {
      if (type === 'Timeout') made++;
    },
  });
  hook.enable();
  try {
    await fn();
  } finally {
    hook.disable();
  }
  return made;
}

test.serial('commands and scripts under the deadline make no timer each', async (t) => {
  const server = await startPrivateRedis(t);
  closeClientsAtEnd(t);
  const redis = createRedis({ url: server.url });
  await waitForRedis(redis, 5000);
  const key = createKeyspace('it').rateBucket(acme, 'requests');
  await takeTokens(redis, key, limit); // the script loaded (NOSCRIPT once)
  const calls = 200;
  const ours = await timersMadeBy(async () => {
    for (let i = 0; i < calls; i++) {
      await takeTokens(redis, key, limit);
      await withDeadline(redis, redis.get('it:absent'));
    }
  });
  t.true(ours <= 4, `${ours} timers for ${2 * calls} calls`);
  // Positive control: node-redis 6.3 left to its defaults (a 5 s `timeout` per command, which the client
  // turns off) makes one timer (an AbortSignal.timeout) for every command.
  const raw = createClient({ url: server.url });
  await raw.connect();
  t.teardown(() => raw.close());
  const theirs = await timersMadeBy(async () => {
    for (let i = 0; i < calls; i++) await raw.get('it:absent');
  });
  t.true(theirs >= calls, `${theirs} timers for ${calls} commands`);
});

/** Redis's own count of reads from its clients' sockets (`total_reads_processed`). */
async function readsProcessed(admin: { info(section: string): Promise<string> }): Promise<number> {
  const m = /^total_reads_processed:(\d+)/m.exec(await admin.info('stats'));
  return Number(m?.[1]);
}

test.serial(
  'two deadlines on one URL share one connection: one write for both, each its own deadline',
  async (t) => {
    const server = await startPrivateRedis(t);
    closeClientsAtEnd(t);
    const patient = createRedis({ url: server.url, commandTimeoutMs: 3000 });
    const hasty = createRedis({ url: server.url, commandTimeoutMs: 100 });
    t.not(hasty, patient);
    await waitForRedis(patient, 5000);
    // A view made before the connection is ready waits for it like the connection itself.
    await waitForRedis(hasty, 5000);
    t.is(await hasty.clientId(), await patient.clientId());

    const admin = createClient({ url: server.url });
    await admin.connect();
    t.teardown(() => admin.close());
    // Commands of one tick through both leave in one write: Redis reads once for them.
    const before = await readsProcessed(admin);
    const [a, b] = await Promise.all([
      withDeadline(patient, patient.set('it:shared:a', '1')),
      withDeadline(hasty, hasty.get('it:shared:a')),
    ]);
    const reads = (await readsProcessed(admin)) - before - 1; // the second INFO's own read
    t.is(a, 'OK');
    t.is(b, '1');
    t.is(reads, 1);

    // Each keeps its own deadline: Redis holds every other client's commands for 1 s.
    await admin.sendCommand(['CLIENT', 'PAUSE', '1000', 'ALL']);
    const [late, slow] = await Promise.allSettled([
      withDeadline(hasty, hasty.ping()),
      withDeadline(patient, patient.ping()),
    ]);
    t.is(late.status, 'rejected');
    t.true(late.status === 'rejected' && late.reason instanceof RedisDeadlineError);
    t.deepEqual(slow, { status: 'fulfilled', value: 'PONG' });
  },
);

test.serial('one client per process per URL and timeouts', async (t) => {
  closeClientsAtEnd(t);
  const url = `redis://127.0.0.1:${await freePort()}`;
  const quiet = { log: () => undefined };
  const a = createRedis({ url, ...quiet });
  t.is(createRedis({ url, ...quiet }), a);
  t.not(createRedis({ url, commandTimeoutMs: 1000, ...quiet }), a);
  t.throws(() => createRedis({ url, commandTimeoutMs: 0 }), { instanceOf: RangeError });
});

test.serial(
  'the first connection is waited for once; an outage after it fails at once',
  async (t) => {
    const port = await freePort();
    closeClientsAtEnd(t);
    const redis = createRedis({ url: `redis://127.0.0.1:${port}`, log: () => undefined });
    // A client created by the first request: a command sent at once finds it offline.
    t.true(isRedisUnavailable(await errorOf(redis.ping())));
    // Redis comes up while the first request waits: it gets through.
    const up = new Promise((r) => setTimeout(r, 300)).then(() => startPrivateRedis(t, port));
    await untilFirstConnected(redis, 10_000);
    t.true(redis.isReady);
    t.is(await redis.ping(), 'PONG');
    // Once it has been ready, an outage is decided at once (no wait per request).
    await (await up).stop();
    const started = Date.now();
    await untilFirstConnected(redis, 10_000);
    t.true(Date.now() - started < 5_000, 'returned without waiting out the 10 s');
    t.true(isRedisUnavailable(await errorOf(redis.ping())));
  },
);

test.serial(
  'a first connection that never comes: the wait ends at its deadline, without throwing',
  async (t) => {
    const port = await freePort();
    closeClientsAtEnd(t);
    const redis = createRedis({ url: `redis://127.0.0.1:${port}`, log: () => undefined });
    await t.notThrowsAsync(untilFirstConnected(redis, 200));
    t.false(redis.isReady);
  },
);
