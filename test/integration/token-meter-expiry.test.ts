/**
 * A reservation whose log phase never settles it is billed at expiry (issue 22): the reserve
 * stores the "estimated" entry (scripts/budget-reserve-4.lua), and the first sweep past its TTL
 * — the tenant's next reserve, the plugin server's timer (plugins/token-meter/expiry.ts) or
 * budget-sweep-4.lua called directly — settles it exactly once with its ledger entry marked
 * `settled_by: expiry`. Against the real Redis at REDIS_URL, each test in its own namespace.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { closeAllRedis, type RedisClient } from '../../lib/redis/client';
import type { Keyspace } from '../../lib/redis/keys';
import { parseTenantId, type TenantId } from '../../lib/tenant/tenant-id';
import { reserveBudget, settleBudget, sweepExpired } from '../../plugins/token-meter/budget';
import { chargeback } from '../../plugins/token-meter/chargeback';
import { ExpirySweeper } from '../../plugins/token-meter/expiry';
import { Spool, ledgerFields, readLedger } from '../../plugins/token-meter/ledger';
import { ladder } from '../../plugins/token-meter/ladder';
import { periodAt } from '../../plugins/token-meter/period';
import { atLength, costOf, type TokenPrice } from '../../plugins/token-meter/pricing';
import { connectRedis, deleteKeyspace, randomKeyspace } from './services';

const acme = parseTenantId('acme');
const globex = parseTenantId('globex');
const DAY = 86_400_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test.after.always(closeAllRedis);

async function setup(t: ExecutionContext): Promise<{ redis: RedisClient; keys: Keyspace }> {
  const redis = await connectRedis();
  const keys = randomKeyspace();
  t.teardown(() => deleteKeyspace(redis, keys));
  return { redis, keys };
}

// Prices as pricing.ts makes them from kong.yml (USD per million × 1000): fractional doubles,
// so the script's cost must be computed exactly as costOf does to match it.
const price: TokenPrice = {
  prompt: 0.15 * 1000,
  completion: 0.6 * 1000,
  cachedPrompt: 0.075 * 1000,
};
const fallbackPrice: TokenPrice = {
  prompt: 0.1 * 1000,
  completion: 0.3 * 1000,
  cachedPrompt: 0.1 * 1000,
};

/** A log phase's (or a spool replay's) settlement of acme's request `rid`: exact usage, or a release. */
function settleAs(
  redis: RedisClient,
  keys: Keyspace,
  period: string,
  rid: string,
  tokens: number,
  cost: number,
  bill = true,
) {
  return settleBudget(redis, keys, acme, period, {
    requestId: rid,
    tokens,
    cost,
    ttlMs: DAY,
    ledger: bill ? { model: 'big', estimated: '0' } : null,
  });
}

/** A reserve as token-meter's access phase makes it: the ladder, and what expiry bills. */
function reserveAsMeter(
  redis: RedisClient,
  keys: Keyspace,
  o: {
    id: string;
    tenant?: TenantId;
    period?: string;
    ttlMs?: number;
    prompt?: number;
    maxTokens?: number;
    n?: number;
    capTokens?: number | null;
  },
) {
  const prompt = o.prompt ?? 1234;
  const n = o.n ?? 2;
  const steps = ladder({
    askedModel: 'big',
    askedPrice: price,
    fallback: { model: 'small', price: fallbackPrice },
    allowClamp: true,
    minClampTokens: 16,
    softThreshold: 0.8,
    promptTokens: prompt,
    choices: n,
    maxTokensPerChoice: o.maxTokens ?? 500,
  });
  return reserveBudget(
    redis,
    keys,
    o.tenant ?? acme,
    o.period ?? periodAt('month', Date.now()).id,
    {
      requestId: o.id,
      ttlMs: o.ttlMs ?? 60_000,
      keyTtlMs: DAY,
      caps: { tokens: o.capTokens ?? null, cost: null },
      candidates: steps.map((s) => s.candidate),
      expiry: {
        modelAsked: 'asked',
        promptTokens: prompt,
        completionPerUnit: n,
        stream: true,
        candidates: steps.map((s) => ({
          model: s.model,
          downgrade: s.downgrade,
          price: atLength(s.price, prompt),
        })),
      },
    },
  );
}

async function budget(redis: RedisClient, keys: Keyspace, tenant: TenantId, period: string) {
  const [used, reserved, usedCost] = await redis.hmGet(keys.budget(tenant, period), [
    'used_tokens',
    'reserved_tokens',
    'used_cost',
  ]);
  return {
    used: Number(used ?? 0),
    reserved: Number(reserved ?? 0),
    usedCost: Number(usedCost ?? 0),
  };
}

async function rawLedger(redis: RedisClient, keys: Keyspace, tenant: TenantId, period: string) {
  return ((await redis.xRange(keys.usageLedger(tenant, period), '-', '+')) ?? []).map(
    (m) => m.message as Record<string, string>,
  );
}

test('a reservation past its TTL is billed by the next reserve: one entry, estimated, marked expiry', async (t) => {
  const { redis, keys } = await setup(t);
  const period = periodAt('month', Date.now()).id;
  const lost = await reserveAsMeter(redis, keys, { id: 'lost-1', ttlMs: 50 });
  t.is(lost.chosen, 0);
  t.is(lost.units, 500);
  await sleep(150);
  const next = await reserveAsMeter(redis, keys, { id: 'next-1' });
  t.is(next.expiredSettled, 1, 'the next reserve settled the expired one');
  const entries = await rawLedger(redis, keys, acme, period);
  t.is(entries.length, 1);
  const completion = 500 * 2;
  const cost = costOf(price, { promptTokens: 1234, completionTokens: completion, cachedTokens: 0 });
  t.like(entries[0], {
    rid: 'lost-1',
    model_asked: 'asked',
    model: 'big',
    prompt: '1234',
    completion: String(completion),
    cached: '0',
    cost_nusd: String(cost),
    cache_hit: '0',
    estimated: '1',
    estimate_basis: 'prompt=tokenizer;completion=bound',
    downgrade: 'none',
    stream: '1',
    status: '0',
    settled_by: 'expiry',
  });
  // The same fields as the log phase's estimated entry, plus settled_by and status 0.
  const logFields = Object.keys(
    ledgerFields({
      ts: 0,
      modelAsked: '',
      modelServed: '',
      promptTokens: 0,
      completionTokens: 0,
      cachedTokens: 0,
      cost: 0,
      cacheHit: false,
      estimated: true,
      downgrade: 'none',
      stream: false,
      status: 0,
    }),
  );
  t.deepEqual(Object.keys(entries[0] ?? {}).sort(), ['rid', 'settled_by', ...logFields].sort());
  const ts = Number(entries[0]?.ts);
  t.true(ts > Date.now() - 60_000 && ts <= Date.now(), 'stamped at the reserve');
  // Budget: the lost request's estimate moved from reserved to used; the new one is reserved.
  const b = await budget(redis, keys, acme, period);
  t.is(b.used, 1234 + completion);
  t.is(b.usedCost, cost);
  t.is(b.reserved, next.totals.reservedTokens);
  t.is(next.totals.usedTokens, 1234 + completion);
  // Showback and chargeback read it as estimated, settled by expiry.
  const [stored] = await readLedger(redis, keys, acme, period, 0, Date.now() + 1000);
  t.like(stored, {
    requestId: 'lost-1',
    estimated: true,
    estimateBasis: 'prompt=tokenizer;completion=bound',
    settledBy: 'expiry',
    cost,
  });

  // A late log (or a spool replayed after an outage longer than the TTL) knows what really
  // happened: it replaces the estimate, once.
  const late = await settleAs(redis, keys, period, 'lost-1', 10, 1);
  t.true(late.settled);
  t.true(late.corrected);
  const after = await rawLedger(redis, keys, acme, period);
  t.is(after.length, 1, 'one entry for the request: the exact one');
  t.like(after[0], { rid: 'lost-1', estimated: '0', replaced: 'expiry' });
  t.is(after[0]?.settled_by, undefined);
  t.like(await budget(redis, keys, acme, period), { used: 10, usedCost: 1 });
  // And only once: a second replay of the same id changes nothing.
  const again = await settleAs(redis, keys, period, 'lost-1', 99, 9);
  t.false(again.settled);
  t.is((await rawLedger(redis, keys, acme, period)).length, 1, 'no second entry');
  t.like(await budget(redis, keys, acme, period), { used: 10, usedCost: 1 }, 'not billed twice');
});

test('a late release of a request billed at expiry refunds it: no entry, the budget back', async (t) => {
  // The request failed (an error after us, a refusal) but its log came only after the TTL.
  const { redis, keys } = await setup(t);
  const period = periodAt('month', Date.now()).id;
  await reserveAsMeter(redis, keys, { id: 'failed-1', ttlMs: 50 });
  await sleep(150);
  t.like(await sweepExpired(redis, keys, acme, period, DAY), { settled: 1 });
  t.true((await budget(redis, keys, acme, period)).used > 0, 'billed at expiry');
  const release = await settleAs(redis, keys, period, 'failed-1', 0, 0, false);
  t.true(release.corrected);
  t.deepEqual(await rawLedger(redis, keys, acme, period), []);
  t.like(await budget(redis, keys, acme, period), { used: 0, usedCost: 0, reserved: 0 });
  // Another tenant's request id, or this one again: nothing more.
  const again = await settleAs(redis, keys, period, 'failed-1', 5, 5);
  t.false(again.settled);
  t.like(await budget(redis, keys, acme, period), { used: 0, usedCost: 0 });
});

test('a spool replayed after an outage longer than the TTL comes out exact', async (t) => {
  // Redis away past the reservation's TTL: the log's exact settlement went to the spool, and
  // the first reserve after Redis came back billed the estimate. The replay then corrects it.
  const { redis, keys } = await setup(t);
  const period = periodAt('month', Date.now()).id;
  await reserveAsMeter(redis, keys, { id: 'during-outage', ttlMs: 50 });
  await sleep(150);
  const back = await reserveAsMeter(redis, keys, { id: 'after-outage', ttlMs: DAY });
  t.is(back.expiredSettled, 1);
  const spool = new Spool(mkdtempSync(path.join(tmpdir(), 'tm-spool-')));
  t.teardown(() => rmSync(spool.dir, { recursive: true, force: true }));
  spool.append({
    tenant: acme,
    period,
    settlement: {
      requestId: 'during-outage',
      tokens: 42,
      cost: 7,
      ttlMs: DAY,
      ledger: { model: 'big', estimated: '0' },
    },
  });
  const r = await spool.replay((tenant, p, s) => settleBudget(redis, keys, tenant, p, s));
  t.like(r, { settled: 1, corrected: 1, duplicate: 0, failed: 0 });
  const entries = await rawLedger(redis, keys, acme, period);
  t.deepEqual(
    entries.map((e) => [e.rid, e.estimated, e.settled_by, e.replaced]),
    [['during-outage', '0', undefined, 'expiry']],
  );
  const b = await budget(redis, keys, acme, period);
  t.is(b.used, 42);
  t.is(b.usedCost, 7);
});

test('the downgrade and the clamp the script chose are what expiry bills', async (t) => {
  const { redis, keys } = await setup(t);
  const period = periodAt('month', Date.now()).id;
  // Cap 2400 tokens. c1 (2000) takes the asked model and puts the tenant past 80 %; c2 (300)
  // then gets the fallback; c3 (250) fits only clamped: 50 + 2 × 25 = the 100 left.
  // A TTL well past the three reserves, even on a loaded machine: an expiry among them would
  // change what the next one is given.
  const r1 = { capTokens: 2400, ttlMs: 1500 };
  const c1 = await reserveAsMeter(redis, keys, { ...r1, id: 'c1', prompt: 1000, maxTokens: 500 });
  const c2 = await reserveAsMeter(redis, keys, { ...r1, id: 'c2', prompt: 100, maxTokens: 100 });
  const c3 = await reserveAsMeter(redis, keys, { ...r1, id: 'c3', prompt: 50, maxTokens: 100 });
  t.deepEqual([c1.chosen, c2.chosen, c3.chosen, c3.units], [0, 1, 2, 25]);
  await sleep(1600);
  const r = await sweepExpired(redis, keys, acme, period, DAY);
  t.like(r, { settled: 3, tokens: 2400, more: false });
  const byRid = new Map((await rawLedger(redis, keys, acme, period)).map((e) => [e.rid, e]));
  const small = (p: number, c: number) =>
    String(costOf(fallbackPrice, { promptTokens: p, completionTokens: c, cachedTokens: 0 }));
  t.like(byRid.get('c1'), { model: 'big', downgrade: 'none', prompt: '1000', completion: '1000' });
  t.like(byRid.get('c2'), { model: 'small', downgrade: 'fallback', cost_nusd: small(100, 200) });
  t.like(byRid.get('c3'), {
    model: 'small',
    downgrade: 'clamp',
    completion: '50',
    cost_nusd: small(50, 50),
  });
  t.like(await budget(redis, keys, acme, period), { used: 2400, reserved: 0 });
});

test('a settle before expiry leaves nothing for the sweep', async (t) => {
  const { redis, keys } = await setup(t);
  const period = periodAt('month', Date.now()).id;
  await reserveAsMeter(redis, keys, { id: 'ok-1', ttlMs: 500 });
  const s = await settleAs(redis, keys, period, 'ok-1', 42, 7);
  t.true(s.settled);
  t.is(
    Number(await redis.hExists(keys.budget(acme, period), 'e:ok-1')),
    0,
    'its expiry billing is gone',
  );
  await sleep(600);
  t.like(await sweepExpired(redis, keys, acme, period, DAY), { settled: 0, more: false });
  t.is((await reserveAsMeter(redis, keys, { id: 'ok-2' })).expiredSettled, 0);
  const entries = await rawLedger(redis, keys, acme, period);
  t.deepEqual(
    entries.map((e) => [e.rid, e.settled_by]),
    [['ok-1', undefined]],
  );
  t.is((await budget(redis, keys, acme, period)).used, 42);
});

test('the sweep settles each expired reservation once, however many sweep at once', async (t) => {
  const { redis, keys } = await setup(t);
  const period = periodAt('month', Date.now()).id;
  // On a loaded machine these 30 reserves can outlast the 50 ms TTL: a later one then settles
  // an earlier one itself, and that counts too.
  let settled = 0;
  for (let i = 0; i < 30; i++) {
    const r = await reserveAsMeter(redis, keys, {
      id: `many-${i}`,
      ttlMs: 50,
      prompt: 10,
      maxTokens: 10,
      n: 1,
    });
    settled += r.expiredSettled;
  }
  await sleep(150);
  // Reserves and sweeps racing (as several plugin servers and nodes do), limit 7 per call.
  const results = await Promise.all([
    ...Array.from({ length: 6 }, () => sweepExpired(redis, keys, acme, period, DAY, 7)),
    ...Array.from({ length: 4 }, (_, i) =>
      reserveAsMeter(redis, keys, { id: `race-${i}`, prompt: 10, maxTokens: 10, n: 1 }),
    ),
  ]);
  for (const r of results) settled += 'settled' in r ? r.settled : r.expiredSettled;
  for (;;) {
    const more = await sweepExpired(redis, keys, acme, period, DAY, 7);
    settled += more.settled;
    if (more.settled === 0) break;
  }
  t.is(settled, 30, 'each call reports only what it settled itself');
  const entries = await rawLedger(redis, keys, acme, period);
  t.is(entries.length, 30);
  t.is(new Set(entries.map((e) => e.rid)).size, 30, 'no request id twice');
  t.true(entries.every((e) => e.settled_by === 'expiry'));
  t.is((await budget(redis, keys, acme, period)).used, 30 * 20);
});

test('the timer sweep bills a tenant that never comes back, one it reserved for and one it only finds by SCAN', async (t) => {
  const { redis, keys } = await setup(t);
  const period = periodAt('month', Date.now()).id;
  const settledBy: Array<[string, number]> = [];
  let spoolPending = false;
  const sweeper = new ExpirySweeper({
    redis: () => redis,
    keys,
    reservationTtlMs: 1000,
    minTtlMs: DAY,
    intervalMs: 60_000, // ticked by hand below
    onSettled: (tenant, r) => settledBy.push([tenant, r.settled]),
    onError: (e) => t.fail(String(e)),
    hold: () => spoolPending,
  });
  // acme's reserve went through this process; globex's through another (a dead one).
  // A TTL the first tick comes well within, even on a loaded machine.
  await reserveAsMeter(redis, keys, { id: 'a-lost', ttlMs: 1000 });
  sweeper.noteReserve(acme, period, Date.now());
  await reserveAsMeter(redis, keys, { id: 'g-lost', tenant: globex, ttlMs: 1000 });
  // Before the TTL: nothing is billed.
  await sweeper.tick();
  t.deepEqual(settledBy, []);
  await sleep(2200); // the TTL, and the second of margin noteReserve waits for
  // While this process's spool holds settlements (an exact one may be among them), it waits.
  spoolPending = true;
  t.is(await sweeper.tick(), 0);
  t.deepEqual(settledBy, []);
  spoolPending = false;
  // A few ticks: the SCAN may need more than one page to reach globex's key.
  for (let i = 0; i < 200 && settledBy.length < 2; i++) await sweeper.tick();
  t.deepEqual(settledBy.sort(), [
    ['acme', 1],
    ['globex', 1],
  ]);
  t.is((await rawLedger(redis, keys, acme, period))[0]?.settled_by, 'expiry');
  t.is((await rawLedger(redis, keys, globex, period))[0]?.settled_by, 'expiry');
  // Nothing left: later ticks bill nothing more.
  for (let i = 0; i < 3; i++) await sweeper.tick();
  t.is(settledBy.length, 2);
  t.is((await rawLedger(redis, keys, globex, period)).length, 1);
  // Every key the sweep wrote expires (nothing held forever).
  for (const key of [
    keys.usageLedger(globex, period),
    keys.budgetSettled(globex, period),
    keys.budget(globex, period),
  ]) {
    const ttl = await redis.pTTL(key);
    t.true(ttl > 0 && ttl <= DAY + 60_000, `${key} ttl ${ttl}`);
  }
});

test('chargeback settles expired reservations before it totals, and counts them', async (t) => {
  const { redis, keys } = await setup(t);
  const now = Date.now();
  const period = periodAt('month', now).id;
  await reserveAsMeter(redis, keys, {
    id: 'cb-lost',
    tenant: globex,
    ttlMs: 50,
    prompt: 100,
    maxTokens: 50,
    n: 1,
  });
  await sleep(150);
  const rows = await chargeback(redis, keys, 'month', now - DAY, now + DAY);
  t.like(rows, [
    {
      tenant: 'globex',
      model: 'big',
      requests: 1,
      estimated: 1,
      settled_by_expiry: 1,
      prompt_tokens: 100,
      completion_tokens: 50,
    },
  ]);
  // Positive control: without the sweep, the reservation's request has no entry.
  await reserveAsMeter(redis, keys, {
    id: 'cb-open',
    tenant: globex,
    prompt: 100,
    maxTokens: 50,
    n: 1,
  });
  const again = await chargeback(redis, keys, 'month', now - DAY, now + DAY);
  t.is(again[0]?.requests, 1, 'an open reservation is not billed');
  t.is(period, periodAt('month', Date.now()).id);
});
