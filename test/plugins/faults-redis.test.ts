/**
 * Redis faults under load, kong.yml's chain on a private, durable redis-server (AOF,
 * appendfsync always, as docs/operations.md asks of the billing Redis): killed (SIGKILL) and
 * restarted, then paused (SIGSTOP) past every plugin's command deadline and continued. The
 * shared Redis is never touched. After each: test/helpers/fault-door.ts checkAfterFault
 * (listed 5xx only, no cross-tenant answer, ledger exact, nothing held past its TTL, served
 * again within the bound stated in docs/operations.md "When a dependency fails").
 */
import test from 'ava';
import { Closers } from '../helpers/frontdoor';
import {
  checkAfterFault,
  holdFault,
  startFaultDoor,
  startLoad,
  untilServedAgain,
  type FaultDoor,
} from '../helpers/fault-door';
import { startPrivateRedis, type PrivateRedis } from '../integration/private-redis';

let door: FaultDoor | undefined;
let redis: PrivateRedis | undefined;
const closers = new Closers();

test.before(async () => {
  redis = await startPrivateRedis({ teardown: closers.add }, undefined, { durable: true });
  door = await startFaultDoor(closers.add, { redisUrl: redis.url });
});
test.after.always(() => closers.closeAll());

// kong.yml: token-meter refuses without Redis (503 budget_unavailable); tenant-ratelimit
// goes on per node (local); the cache misses; retrieval skips only its embedding cache.
const OUTAGE_5XX = ['503 budget_unavailable'];

test.serial(
  'Redis killed and restarted under load: nothing billed twice or lost, served again',
  async (t) => {
    const d = door as FaultDoor;
    const r = redis as PrivateRedis;
    const load = startLoad(d, 4);
    await new Promise((res) => setTimeout(res, 2500));
    await r.kill();
    const down = Date.now();
    await holdFault(
      () => load.outcomes.some((o) => o.sentAt > down && o.code === 'budget_unavailable'),
      3000,
    );
    await r.restart();
    const restoredAt = Date.now();
    await untilServedAgain(d, load, restoredAt, 10_000);
    const outcomes = await load.stop();
    const during = outcomes.filter((o) => o.sentAt > down + 500 && o.sentAt < restoredAt - 1000);
    t.true(during.length > 0, 'requests were sent while Redis was down');
    t.true(
      // Never served unmetered: the meter refuses (or a per-node limit does, before it).
      during.every((o) => o.status !== 200) &&
        during.some((o) => o.status === 503 && o.code === 'budget_unavailable'),
      `refused while Redis is down: ${JSON.stringify([...new Set(during.map((o) => `${o.status} ${o.code}`))])}`,
    );
    await checkAfterFault(t, d, outcomes, {
      allowed: OUTAGE_5XX,
      restoredAt,
      recoveryBoundMs: 10_000,
    });
  },
);

test.serial(
  'Redis paused past the command deadline: refused within the deadline, nothing counted twice',
  async (t) => {
    const d = door as FaultDoor;
    const r = redis as PrivateRedis;
    const load = startLoad(d, 4);
    await new Promise((res) => setTimeout(res, 2500));
    r.pause();
    const paused = Date.now();
    // Long enough for requests to start and end within it: each waits out one deadline per
    // plugin that uses Redis, one after the other.
    await holdFault(
      () => load.outcomes.some((o) => o.sentAt > paused + 500 && o.code === 'budget_unavailable'),
      6000,
    );
    r.resume();
    const restoredAt = Date.now();
    await untilServedAgain(d, load, restoredAt, 10_000);
    const outcomes = await load.stop();
    const during = outcomes.filter((o) => o.sentAt > paused + 500 && o.sentAt < restoredAt);
    t.true(during.length > 0, 'requests were sent while Redis was paused');
    t.true(
      during.some((o) => o.status === 503 && o.code === 'budget_unavailable'),
      JSON.stringify(during.map((o) => `${o.status} ${o.code} ${o.endAt - o.sentAt}ms`)),
    );
    // No request waits on a paused Redis much beyond the plugins' deadlines, one after the other
    // (the fault door: 1 s each; kong.yml: 100-250 ms).
    const slowest = Math.max(...during.map((o) => o.endAt - o.sentAt));
    t.log(`slowest answer while paused: ${slowest} ms`);
    t.true(slowest < 6000, `a request waited ${slowest} ms on a paused Redis`);
    await checkAfterFault(t, d, outcomes, {
      allowed: OUTAGE_5XX,
      restoredAt,
      recoveryBoundMs: 10_000,
    });
  },
);
