/**
 * Drill (issue 22, "nothing lost"): a request answered 200 whose token-meter log phase never
 * runs — the chain's plugin server is killed while the request is upstream and kept down until
 * Kong has answered and run (failed) the log — is still billed: once its reservation's TTL has
 * passed, the respawned plugin server's sweep (a timer; the tenant sends nothing more) writes
 * its ledger entry, estimated and marked `settled_by: expiry`, exactly once, and the budget's
 * reservation becomes usage. kong.yml's chain through the fault door, on the real Kong and on
 * the harness; reservation TTL 10 s (its minimum), sweep every second.
 */
import test from 'ava';
import { createClient } from 'redis';
import { metricAt } from '../helpers/semantic-door';
import { Closers } from '../helpers/frontdoor';
import {
  ask,
  FAULT_TTLS,
  randomQuestion,
  startFaultDoor,
  type FaultDoor,
} from '../helpers/fault-door';
import { freePort } from '../../harness/free-port';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Redis = ReturnType<typeof createClient>;

async function entriesOf(redis: Redis, d: FaultDoor, rid: string) {
  const out: Array<Record<string, string>> = [];
  for await (const keys of redis.scanIterator({
    MATCH: `${d.namespace}tm:{t:${d.A.id}}:ledger:*`,
  })) {
    for (const key of keys) {
      for (const e of (await redis.xRange(key, '-', '+')) ?? []) {
        const f = (e?.message ?? {}) as Record<string, string>;
        if (f.rid === rid) out.push(f);
      }
    }
  }
  return out;
}

test.serial(
  'an answered request whose log never runs is billed at expiry: one entry, estimated, settled_by expiry',
  async (t) => {
    const closers = new Closers();
    t.teardown(() => closers.closeAll());
    const metricsPort = await freePort();
    const d = await startFaultDoor(closers.add, {
      adjust: (p) => {
        if (p.name !== 'token-meter') return;
        const c = p.config as Record<string, unknown>;
        c.expiry_sweep_interval_seconds = 1;
        c.metrics_port = metricsPort;
      },
    });
    const redis: Redis = createClient({ url: d.redisUrl });
    await redis.connect();
    closers.add(() => redis.close());

    // Warm: A served and settled by its log (no settled_by), the chain's instances started.
    const warm = await ask(d, d.A, randomQuestion(), false);
    t.is(warm.status, 200);
    const chats = () => d.upstream.received.filter((r) => r.path.startsWith('/v1/chat')).length;
    const before = chats();

    // The request spends 2 s upstream (the fault door's read timeout is 3 s); once there (its reservation taken in access), the chain's
    // process is killed, and killed again whenever it comes back, until Kong has answered and
    // its log phase has found no process (Kong respawns at most once a second).
    d.upstream.configure({ latencyMs: 2000 });
    const bound = 200;
    const pending = ask(d, d.A, randomQuestion(), false, { extra: { max_tokens: bound } });
    const until = Date.now() + 20_000;
    while (chats() === before && Date.now() < until) await sleep(20);
    t.is(chats(), before + 1, 'the request reached the upstream');
    let answeredAt = 0;
    void pending.then(() => {
      answeredAt = Date.now();
    });
    let kills = 0;
    while (answeredAt === 0 || Date.now() - answeredAt < 1500) {
      const pid = d.gateway.pluginServerInfo('token-meter').pid;
      if (pid > 0) {
        try {
          process.kill(pid, 'SIGKILL');
          kills += 1;
        } catch {
          // already gone
        }
      }
      await sleep(50);
    }
    d.upstream.configure({ latencyMs: 0 });
    const lost = await pending;
    t.is(lost.status, 200, 'answered');
    t.truthy(lost.rid);
    t.true(kills >= 1);
    const rid = lost.rid as string;
    // Positive control: the log phase did not settle it (its TTL has not passed yet).
    t.deepEqual(await entriesOf(redis, d, rid), [], 'no ledger entry from a log phase');

    // The chain back (the guard refuses until then): B's request starts the new process's
    // token-meter instance, and with it the sweep. A sends nothing more.
    const back = Date.now() + 60_000;
    let served = false;
    while (!served && Date.now() < back) {
      served = (await ask(d, d.B, randomQuestion(), false)).status === 200;
      if (!served) await sleep(250);
    }
    t.true(served, 'the chain serves again');

    // Billed at expiry: TTL 10 s after its reserve, then the next tick of the sweep.
    let entries: Array<Record<string, string>> = [];
    const deadline = Date.now() + FAULT_TTLS.reservationSeconds * 1000 + 40_000;
    while (entries.length === 0 && Date.now() < deadline) {
      await sleep(500);
      entries = await entriesOf(redis, d, rid);
    }
    await sleep(2500); // a few more sweeps: an entry written twice would land now
    entries = await entriesOf(redis, d, rid);
    t.is(entries.length, 1, 'exactly one entry');
    t.like(entries[0], {
      settled_by: 'expiry',
      estimated: '1',
      status: '0',
      model: 'gpt-4o-mini',
      cache_hit: '0',
      completion: String(bound),
    });
    t.true(Number(entries[0]?.prompt) > 0);
    t.true(Number(entries[0]?.cost_nusd) > 0, 'billed at its price');
    // The warm request's entry is the log's own (no settled_by): the marker tells them apart.
    const [warmEntry] = await entriesOf(redis, d, warm.rid as string);
    t.is(warmEntry?.settled_by, undefined);
    t.is(warmEntry?.estimated, '0');
    // Counted by the process that billed it (the respawned one).
    t.is(
      await metricAt(
        `http://127.0.0.1:${metricsPort}/metrics`,
        'token_meter_expired_settlements_total',
        {
          tenant: d.A.id,
        },
      ),
      1,
    );
    // Nothing of it is still reserved.
    let reserved = 0;
    for await (const keys of redis.scanIterator({
      MATCH: `${d.namespace}tm:{t:${d.A.id}}:budget:*`,
    })) {
      for (const key of keys) reserved += Number((await redis.hGet(key, 'reserved_tokens')) ?? 0);
    }
    t.is(reserved, 0);
  },
);
