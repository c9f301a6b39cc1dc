/**
 * The soak's short variant (issue 22 part 4; the full one is `npm run soak`, bench/soak.ts):
 * three nodes of the whole chain (on Kong: 1, 2 and 4 nginx workers), one Redis (the Redis
 * Cluster when REDIS_CLUSTER_URL is set), Milvus, one mock upstream, and a few thousand requests
 * of the soak's mix at a steady rate: chat misses, cache hits, streams, retrieval of seeded
 * knowledge, 429s, 401s and 400s. Then, exactly: every tenant's ledger in Redis equals what the
 * upstream answered (cache hits one entry each at 0 tokens, as token-meter's README says), no
 * entry twice, none estimated, no reservation held past its TTL; no event left open in any
 * plugin server; on Kong, no line from a plugin server at level error or above in any node's
 * error log. On the harness (no Kong log to read) the same run with fewer requests: ledger and
 * events only. No timing is asserted: the event-loop lag is logged, the soak's figures are in
 * docs/benchmarks.md.
 */
import test from 'ava';
import { Closers, gatewayKind } from '../helpers/frontdoor';
import {
  MIX,
  runMixedLoad,
  retrievalSeen,
  settleAndCompare,
  startSoakCluster,
  warmUp,
} from '../helpers/soak-chain';
import {
  bulkheadSlotsHeld,
  errorLines,
  LagWatch,
  lagTargets,
  pendingEvents,
} from '../helpers/soak-watch';

const onKong = gatewayKind() === 'kong';
/** 40 s of load on Kong: every kind of the mix a hundred times. */
const REQUESTS = onKong ? 2000 : 1000;
const RATE = 50;

test.serial(
  `${REQUESTS} mixed requests through three nodes: ledger = upstream usage exactly, no plugin-server error, no open event`,
  async (t) => {
    t.timeout(300_000);
    const closers = new Closers();
    t.teardown(() => closers.closeAll());
    const cluster = await startSoakCluster(closers.add);
    await warmUp(cluster);
    const targets = lagTargets(cluster);
    t.is(new Set(targets.map((x) => x.pid)).size, targets.length);
    t.true(targets.length >= 3, 'a plugin server per node at least');
    const lag = new LagWatch(targets);
    await lag.sample(false);
    const sampler = setInterval(() => void lag.sample(), 5000);
    const since = Date.now();
    const load = await runMixedLoad(cluster, { requests: REQUESTS, ratePerSecond: RATE });
    clearInterval(sampler);
    await lag.sample();
    const check = await settleAndCompare(cluster, load, since);

    if (load.serverErrors.size > 0) t.log('5xx answers:', [...load.serverErrors]);
    // What was sent, by kind: every kind got the answer it should, and each happened.
    const statuses = (kind: (typeof MIX)[number]) => load.byKind.get(kind) ?? new Map();
    const only = (kind: (typeof MIX)[number], status: number) => {
      const s = statuses(kind);
      t.deepEqual([...s.keys()], [status], `${kind}: ${JSON.stringify([...s])}`);
    };
    for (const kind of [
      'cacheable (pro)',
      'cacheable (free)',
      'chat + retrieval (pro)',
      'chat + retrieval (free)',
      'stream (pro)',
      'stream (free)',
      'model tier rewrite',
      'model list',
    ] as const)
      only(kind, 200);
    only('no key', 401);
    only('wrong key', 401);
    only('malformed JSON', 400);
    const over = statuses('over the limit');
    t.true((over.get(429) ?? 0) > 0, 'control: the limited tenant was refused');
    t.true((over.get(200) ?? 0) > 0, 'control: and served within its limit');
    t.is(over.size, 2, JSON.stringify([...over]));
    t.deepEqual([...load.serverErrors], []);

    // Positive controls of the comparison: hits and retrieval really happened.
    for (const tenant of [cluster.tenants.pro, cluster.tenants.free]) {
      t.true((load.hits.get(tenant) ?? 0) > 0, `cache hits for ${tenant}`);
      t.true((retrievalSeen(cluster).get(tenant) ?? 0) > 0, `retrieval for ${tenant}`);
    }

    // The bill: the ledger equals the upstream's usage, to the token, per tenant.
    t.is(check.untenanted, 0, 'no chat reached the upstream without a tenant');
    for (const r of check.rows) {
      t.true(r.upstream.answers > 0, `control: ${r.tenant} was served`);
      t.is(r.ledger.metered, r.upstream.answers, `${r.tenant}: one entry per upstream answer`);
      t.is(r.ledger.prompt, r.upstream.prompt, `${r.tenant}: prompt tokens`);
      t.is(r.ledger.completion, r.upstream.completion, `${r.tenant}: completion tokens`);
      t.is(r.ledger.hits, r.clientHits, `${r.tenant}: one entry per cache hit`);
      t.is(r.ledger.hitTokens, 0, `${r.tenant}: a cache hit bills no upstream token`);
      t.is(r.ledger.estimated, 0, `${r.tenant}: nothing estimated`);
      t.is(r.ledger.duplicates, 0, `${r.tenant}: no entry twice`);
      t.is(r.reservationsLeft, 0, `${r.tenant}: no reservation held past its TTL`);
      if (r.reservationsExpired > 0)
        t.log(
          `${r.tenant}: ${r.reservationsExpired} reservation(s) ended by TTL (billed at expiry if the reserve stored its estimate)`,
        );
    }
    t.true(check.exact);

    // No event left open in any plugin server.
    for (const e of await pendingEvents(targets)) t.is(e.open, 0, e.target.label);
    // No bulkhead slot left held (the soak's bulkhead is roomy, so a leak would not refuse).
    for (const h of await bulkheadSlotsHeld(cluster)) t.is(h.held, 0, `node ${h.node}`);

    // On Kong: no error line from a plugin server in any node's log.
    const lines = errorLines(cluster);
    if (onKong) {
      t.truthy(lines);
      t.deepEqual([...(lines?.pluginServer ?? [])], []);
      if (lines && lines.all.size > 0) t.log('other error lines:', [...lines.all]);
    }
    t.log(
      `${REQUESTS} requests in ${load.seconds.toFixed(0)} s at ${RATE}/s ` +
        `(start lateness p99 ${load.late.p99.toFixed(0)} ms, peak ${load.maxInFlight} in flight); statuses ${JSON.stringify([...load.statuses])}; ` +
        `settled ${check.settleSeconds.toFixed(1)} s after`,
    );
    for (const l of lag.summary())
      t.log(
        `${l.target.label}: event-loop lag p99 max ${l.maxMs.toFixed(1)} ms, median ${l.medianMs.toFixed(1)} ms (${l.windows} windows)`,
      );
  },
);
