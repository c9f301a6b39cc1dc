/**
 * Faults of a real Redis Cluster under the project's client, on a private 3-master cluster of
 * this file (scripts/services/redis-cluster.sh on free ports, stopped at the end):
 * - a tenant's slot moved to another master while its scripts run: a half-moved slot
 *   (TRYAGAIN) is sent again until its keys are all moved, a moved key is followed by ASK,
 *   the finished move by MOVED, and the tenant's state goes on where it was;
 * - a master killed: its tenants' calls fail at once as "unavailable" (the plugins' fallback)
 *   while the other masters' tenants are served, and once the replica has taken over they
 *   succeed again with the state the replica had (a settled request stays settled).
 * Serial: both change the cluster's topology.
 */
import test, { type ExecutionContext } from 'ava';
import { closeAllRedis, type RedisClusterClient } from '../../lib/redis/client';
import { isRedisUnavailable } from '../../lib/redis/errors';
import { hashSlot } from '../../lib/redis/hash-slot';
import { createKeyspace, type Keyspace } from '../../lib/redis/keys';
import { admitTenant } from '../../plugins/tenant-ratelimit/tenant-limits';
import type { TenantId } from '../../lib/tenant/tenant-id';
import { settleBudget, type Settlement } from '../../plugins/token-meter/budget';
import {
  clusterScript,
  connectCluster,
  masterPortOf,
  nodeAdmin,
  startPrivateCluster,
  tenantsOnEveryMaster,
  type PrivateCluster,
} from './redis-cluster-service';

/** Longer than production's 250 ms: this machine is shared and loaded. */
const COMMAND_TIMEOUT_MS = 1000;
/** A failed call must settle within its deadline; this much on top is scheduling slack. */
const FAIL_FAST_SLACK_MS = 2000;
/** Node timeout (2 s) + election + the client's topology refresh, with a wide margin. */
const FAILOVER_BOUND_MS = 60_000;

let cluster: PrivateCluster | undefined;
const logs: string[] = [];
let redis: RedisClusterClient;

test.before(async () => {
  cluster = await startPrivateCluster();
  redis = await connectCluster(cluster.url, COMMAND_TIMEOUT_MS, (m) => logs.push(m));
});
test.after.always(async () => {
  await closeAllRedis();
  await cluster?.stop();
});

function privateCluster(): PrivateCluster {
  if (!cluster) throw new Error('the private cluster did not start');
  return cluster;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function nodeId(t: ExecutionContext, port: number): Promise<string> {
  return String(await (await nodeAdmin(t, port)).sendCommand(['CLUSTER', 'MYID']));
}

/** `errorstat_<code>:count=N` of a node (Redis 7 counts error replies by their code). */
async function errorCount(t: ExecutionContext, port: number, code: string) {
  const info = await (await nodeAdmin(t, port)).info('errorstats');
  return Number(new RegExp(`^errorstat_${code}:count=(\\d+)`, 'm').exec(info)?.[1] ?? 0);
}

/**
 * Every limit on, so each of the script's three keys exists: in a slot being migrated, a
 * multi-key call with a key that exists on neither side is refused (TRYAGAIN) until the
 * migration ends, on the source and on the destination alike.
 */
const limits = {
  requestsPerMinute: 1,
  requestBurst: 10,
  tokensPerMinute: 1,
  tokenBurst: 1000,
  maxConcurrent: 100,
};

test.serial(
  'a tenant’s slot moved to another master: TRYAGAIN, then ASK, then MOVED',
  async (t) => {
    const keys: Keyspace = createKeyspace('it-move');
    const [tenant] = tenantsOnEveryMaster(redis, 'mv') as [TenantId];
    const slot = hashSlot(`t:${tenant}`);
    const srcPort = masterPortOf(redis, slot);
    const dstPort = redis.masters.map((m) => m.port).find((p) => p !== srcPort) as number;
    const [src, dst] = [await nodeAdmin(t, srcPort), await nodeAdmin(t, dstPort)];
    const [srcId, dstId] = [await nodeId(t, srcPort), await nodeId(t, dstPort)];
    const admit = (lease: string) => admitTenant(redis, keys, tenant, limits, 1, lease, 600_000);

    for (const lease of ['l1', 'l2', 'l3']) t.like(await admit(lease), { allowed: true });
    const tenantKeys = [
      keys.rateBucket(tenant, 'requests'),
      keys.rateBucket(tenant, 'tokens'),
      keys.concurrencyLeases(tenant),
    ];
    t.is(Number(await src.sendCommand(['CLUSTER', 'COUNTKEYSINSLOT', String(slot)])), 3);

    // The move begins: the destination imports, the source migrates.
    await dst.sendCommand(['CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', srcId]);
    await src.sendCommand(['CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', dstId]);
    const migrate = (key: string) =>
      src.sendCommand(['MIGRATE', '127.0.0.1', String(dstPort), '', '0', '5000', 'KEYS', key]);

    // Half moved: the script's keys are on two nodes, the source answers TRYAGAIN; the call is
    // sent again until the second key has moved too, then goes on (ASK) on the destination.
    await migrate(tenantKeys[2] as string);
    const tryAgainBefore = await errorCount(t, srcPort, 'TRYAGAIN');
    const halfMoved = admit('l4');
    await sleep(100);
    await migrate(tenantKeys[0] as string);
    await migrate(tenantKeys[1] as string);
    t.like(await halfMoved, { allowed: true, inFlight: 4, requestsLeft: 6 });
    t.true((await errorCount(t, srcPort, 'TRYAGAIN')) > tryAgainBefore, 'TRYAGAIN was answered');

    // All moved, the slot still migrating: the source answers ASK and the call runs on the
    // destination, on the moved state; the client's map still names the source.
    t.like(await admit('l5'), { allowed: true, inFlight: 5, requestsLeft: 5 });
    t.is(masterPortOf(redis, slot), srcPort);
    t.is(Number(await src.sendCommand(['CLUSTER', 'COUNTKEYSINSLOT', String(slot)])), 0);
    t.is(Number(await dst.sendCommand(['CLUSTER', 'COUNTKEYSINSLOT', String(slot)])), 3);

    // The move ends (every master told): the source answers MOVED, the client reads the new
    // topology and sends the call to the destination.
    await dst.sendCommand(['CLUSTER', 'SETSLOT', String(slot), 'NODE', dstId]);
    await src.sendCommand(['CLUSTER', 'SETSLOT', String(slot), 'NODE', dstId]);
    for (const m of redis.masters.filter((m) => m.port !== srcPort && m.port !== dstPort)) {
      await (
        await nodeAdmin(t, m.port)
      ).sendCommand(['CLUSTER', 'SETSLOT', String(slot), 'NODE', dstId]);
    }
    t.like(await admit('l6'), { allowed: true, inFlight: 6, requestsLeft: 4 });
    t.is(masterPortOf(redis, slot), dstPort, 'the client learned the new owner');
    await redis.unlink(tenantKeys);
  },
);

test.serial(
  'a master killed: its tenants fail fast, the others go on, its replica takes over',
  async (t) => {
    const keys: Keyspace = createKeyspace('it-failover');
    const DAY = 86_400_000;
    const period = '2026-12';
    const [victim, ...others] = tenantsOnEveryMaster(redis, 'fo') as [TenantId, ...TenantId[]];
    const slot = hashSlot(`t:${victim}`);
    const masterPort = masterPortOf(redis, slot);
    const master = await nodeAdmin(t, masterPort);
    const settlement = (requestId: string, tokens: number): Settlement => ({
      requestId,
      tokens,
      cost: 0,
      ttlMs: DAY,
      ledger: { model: 'gpt-4o' },
    });
    const settle = (tenant: TenantId, s: Settlement) =>
      settleBudget(redis, keys, tenant, period, s);

    t.like(await settle(victim, settlement('r1', 42)), { settled: true, usedTokens: 42 });
    for (const other of others) t.like(await settle(other, settlement('r1', 7)), { settled: true });
    // Replication is asynchronous: the test waits for the replica to have the write, so what
    // it checks after the failover is the failover, not the replication lag.
    t.is(Number(await master.sendCommand(['WAIT', '1', '5000'])), 1);
    const replicaPort = Number(
      /^slave0:ip=[^,]+,port=(\d+)/m.exec(await master.info('replication'))?.[1],
    );
    t.true(privateCluster().ports.includes(replicaPort));

    process.kill(privateCluster().pid(masterPort), 'SIGKILL');
    const killedAt = Date.now();
    let failures = 0;
    let othersServed = 0;
    let recoveredAfterMs = -1;
    while (Date.now() - killedAt < FAILOVER_BOUND_MS) {
      const started = Date.now();
      try {
        // The same request id again: settled before the kill, so nothing changes.
        t.like(await settle(victim, settlement('r1', 42)), { settled: false, usedTokens: 42 });
        recoveredAfterMs = Date.now() - killedAt;
        break;
      } catch (e) {
        failures++;
        t.true(isRedisUnavailable(e), `unavailable, not another error: ${String(e)}`);
        t.true(Date.now() - started < COMMAND_TIMEOUT_MS + FAIL_FAST_SLACK_MS, 'failed fast');
      }
      // Tenants of the other masters are served during the outage.
      for (const [i, other] of others.entries()) {
        try {
          if ((await settle(other, settlement(`o${failures}-${i}`, 1))).settled) othersServed++;
        } catch {
          // A refusal here shows in othersServed; the victim's loop goes on.
        }
      }
      await sleep(100);
    }
    t.log(
      `failover: ${failures} calls refused, served again ${recoveredAfterMs} ms after the kill`,
    );
    t.true(recoveredAfterMs >= 0, `not served again within ${FAILOVER_BOUND_MS} ms`);
    t.true(failures > 0, 'the outage was seen');
    t.true(othersServed > 0, 'other masters served during the outage');
    t.is(masterPortOf(redis, slot), replicaPort, 'the client follows the promoted replica');
    t.like(await settle(victim, settlement('r2', 8)), { settled: true, usedTokens: 50 });
    t.is(
      logs.filter((m) => m.includes(`node 127.0.0.1:${masterPort} unavailable`)).length,
      1,
      'one log line for the outage of the node',
    );

    // The project's script puts the killed node back: it rejoins as the new master's replica.
    await clusterScript('start', privateCluster().firstPort);
    t.regex(await (await nodeAdmin(t, masterPort)).info('replication'), /^role:slave/m);
    await redis.unlink([keys.budget(victim, period)]);
  },
);
