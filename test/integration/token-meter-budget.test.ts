/**
 * scripts/budget-reserve-4.lua and budget-settle-4.lua through token-meter's budget module,
 * against the real Redis at REDIS_URL, each test in its own random key namespace.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { closeAllRedis, type RedisClient } from '../../lib/redis/client';
import type { Keyspace } from '../../lib/redis/keys';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import {
  reserveBudget,
  settleBudget,
  type ReserveCandidate,
} from '../../plugins/token-meter/budget';
import { chargeback } from '../../plugins/token-meter/chargeback';
import { ledgerFields, readLedger, Spool, spoolSettler } from '../../plugins/token-meter/ledger';
import { periodAt } from '../../plugins/token-meter/period';
import { connectRedis, deleteKeyspace, randomKeyspace } from './services';
import { expiryBilling } from '../helpers/expiry-billing';

const acme = parseTenantId('acme');
const globex = parseTenantId('globex');
const P = '2026-11';
const DAY = 86_400_000;

test.after.always(closeAllRedis);

async function setup(t: ExecutionContext): Promise<{ redis: RedisClient; keys: Keyspace }> {
  const redis = await connectRedis();
  const keys = randomKeyspace();
  t.teardown(() => deleteKeyspace(redis, keys));
  return { redis, keys };
}

const fixed = (tokens: number, cost = 0, softRatio = 1): ReserveCandidate => ({
  baseTokens: tokens,
  baseCost: cost,
  unitTokens: 0,
  unitCost: 0,
  minUnits: 0,
  maxUnits: 0,
  softRatio,
});

const reserve = (
  redis: RedisClient,
  keys: Keyspace,
  id: string,
  candidates: ReserveCandidate[],
  caps = { tokens: 1000 as number | null, cost: null as number | null },
  tenant = acme,
  ttlMs = 60_000,
) =>
  reserveBudget(redis, keys, tenant, P, {
    requestId: id,
    ttlMs,
    keyTtlMs: DAY,
    caps,
    candidates,
    expiry: expiryBilling(candidates.length),
  });

test('reserve takes the first candidate that fits and refuses when none does', async (t) => {
  const { redis, keys } = await setup(t);
  t.like(await reserve(redis, keys, 'r1', [fixed(600)]), { chosen: 0 });
  const second = await reserve(redis, keys, 'r2', [fixed(600), fixed(300)]);
  t.is(second.chosen, 1);
  t.like(second.totals, { usedTokens: 0, reservedTokens: 900 });
  const third = await reserve(redis, keys, 'r3', [fixed(200)]);
  t.is(third.chosen, -1);
  t.like(third.totals, { reservedTokens: 900 }, 'a refusal reserves nothing');
  t.is((await reserve(redis, keys, 'r1', [fixed(1)])).chosen, 'duplicate');
});

test('a clamp candidate takes the largest units that fit, not below its minimum', async (t) => {
  const { redis, keys } = await setup(t);
  const clamp: ReserveCandidate = {
    baseTokens: 100,
    baseCost: 0,
    unitTokens: 2,
    unitCost: 0,
    minUnits: 16,
    maxUnits: 1000,
    softRatio: 1,
  };
  const r = await reserve(redis, keys, 'c1', [clamp]);
  t.like(r, { chosen: 0, units: 450 }, '100 + 2 × 450 = 1000');
  t.is((await reserve(redis, keys, 'c2', [clamp])).chosen, -1, 'nothing left above the minimum');
});

test('the soft ratio makes a candidate ineligible past the threshold', async (t) => {
  const { redis, keys } = await setup(t);
  await reserve(redis, keys, 's0', [fixed(850)]);
  const r = await reserve(redis, keys, 's1', [fixed(10, 0, 0.8), fixed(20)]);
  t.is(r.chosen, 1, 'past 80 %: the downgrade candidate');
});

test('the money cap binds like the token cap', async (t) => {
  const { redis, keys } = await setup(t);
  const caps = { tokens: null, cost: 5000 };
  t.is((await reserve(redis, keys, 'm1', [fixed(1, 4000)], caps)).chosen, 0);
  t.is((await reserve(redis, keys, 'm2', [fixed(1, 2000)], caps)).chosen, -1);
  t.is((await reserve(redis, keys, 'm3', [fixed(1, 1000)], caps)).chosen, 0);
});

test('200 concurrent reservations never exceed the cap', async (t) => {
  const { redis, keys } = await setup(t);
  const results = await Promise.all(
    Array.from({ length: 200 }, (_, i) => reserve(redis, keys, `x${i}`, [fixed(7)])),
  );
  const granted = results.filter((r) => r.chosen === 0).length;
  t.is(granted, Math.floor(1000 / 7));
  const last = await reserve(redis, keys, 'probe', [fixed(0)]);
  t.true(last.totals.reservedTokens <= 1000);
});

test('settle releases the reservation, adds the actual usage, and only once per request id', async (t) => {
  const { redis, keys } = await setup(t);
  await reserve(redis, keys, 'q1', [fixed(500, 50)]);
  const s = {
    requestId: 'q1',
    tokens: 120,
    cost: 12,
    ttlMs: DAY,
    ledger: { ts: String(Date.now()), model: 'gpt-4o', prompt: '100', completion: '20' },
  };
  t.like(await settleBudget(redis, keys, acme, P, s), {
    settled: true,
    usedTokens: 120,
    usedCost: 12,
  });
  t.like(await settleBudget(redis, keys, acme, P, { ...s, tokens: 999 }), {
    settled: false,
    usedTokens: 120,
  });
  const probe = await reserve(redis, keys, 'q2', [fixed(0)]);
  t.like(probe.totals, { usedTokens: 120, reservedTokens: 0, usedCost: 12, reservedCost: 0 });
  const ledger = await readLedger(redis, keys, acme, P, 0, Date.now() + 1000);
  t.is(ledger.length, 1, 'one ledger entry despite the replay');
  t.like(ledger[0], { requestId: 'q1', promptTokens: 100, completionTokens: 20 });
});

test('a release (error, refusal) frees the reservation and writes no ledger entry', async (t) => {
  const { redis, keys } = await setup(t);
  await reserve(redis, keys, 'e1', [fixed(900)]);
  await settleBudget(redis, keys, acme, P, {
    requestId: 'e1',
    tokens: 0,
    cost: 0,
    ttlMs: DAY,
    ledger: null,
  });
  t.is((await reserve(redis, keys, 'e2', [fixed(900)])).chosen, 0);
  t.deepEqual(await readLedger(redis, keys, acme, P, 0, Date.now() + 1000), []);
});

test('an unsettled reservation expires by itself', async (t) => {
  const { redis, keys } = await setup(t);
  await reserve(redis, keys, 'lost', [fixed(900)], undefined, acme, 50);
  await new Promise((r) => setTimeout(r, 120));
  t.is((await reserve(redis, keys, 'next', [fixed(900)])).chosen, 0, 'swept on the next call');
});

test('tenants do not share budgets', async (t) => {
  const { redis, keys } = await setup(t);
  await reserve(redis, keys, 'a1', [fixed(1000)]);
  t.is((await reserve(redis, keys, 'a2', [fixed(1)])).chosen, -1);
  t.is((await reserve(redis, keys, 'b1', [fixed(1000)], undefined, globex)).chosen, 0);
  t.not(keys.budget(acme, P), keys.budget(globex, P));
});

test('the spool replays into Redis once, deduplicated by request id', async (t) => {
  const { redis, keys } = await setup(t);
  const spool = new Spool(mkdtempSync(path.join(tmpdir(), 'tm-spool-')));
  const settlement = {
    requestId: 'sp1',
    tokens: 30,
    cost: 3,
    ttlMs: DAY,
    ledger: { ts: String(Date.now()), model: 'gpt-4o-mini', prompt: '10', completion: '20' },
  };
  spool.append({ tenant: 'acme', period: P, settlement });
  spool.append({ tenant: 'acme', period: P, settlement });
  const r = await spool.replay(spoolSettler(redis, keys));
  t.deepEqual(r, { settled: 1, duplicate: 1, failed: 0, corrected: 0 });
  t.deepEqual(spool.pending(), []);
  const ledger = await readLedger(redis, keys, acme, P, 0, Date.now() + 1000);
  t.is(ledger.length, 1);
});

test('chargeback totals every tenant per model over the range, and the CLI prints it as CSV', async (t) => {
  const { redis, keys } = await setup(t);
  const now = Date.now();
  const period = periodAt('month', now).id;
  const entry = (model: string, prompt: number, completion: number, cost: number) =>
    ledgerFields({
      ts: now,
      modelAsked: model,
      modelServed: model,
      promptTokens: prompt,
      completionTokens: completion,
      cachedTokens: 0,
      cost,
      cacheHit: false,
      estimated: false,
      downgrade: 'none',
      stream: false,
      status: 200,
    });
  const settle = (tenant: typeof acme, id: string, model: string, p: number, c: number) =>
    settleBudget(redis, keys, tenant, period, {
      requestId: id,
      tokens: p + c,
      cost: 1000 * (p + c),
      ttlMs: DAY,
      ledger: entry(model, p, c, 1000 * (p + c)),
    });
  await settle(acme, 'c1', 'gpt-4o', 10, 5);
  await settle(acme, 'c2', 'gpt-4o', 20, 5);
  await settle(acme, 'c3', 'gpt-4o-mini', 1, 1);
  await settle(globex, 'c1', 'gpt-4o', 7, 3);

  const rows = await chargeback(redis, keys, 'month', now - DAY, now + DAY);
  t.deepEqual(
    rows.map((r) => [r.tenant, r.model, r.requests, r.prompt_tokens, r.completion_tokens]),
    [
      ['acme', 'gpt-4o', 2, 30, 10],
      ['acme', 'gpt-4o-mini', 1, 1, 1],
      ['globex', 'gpt-4o', 1, 7, 3],
    ],
  );
  t.is(rows[0]?.cost_usd, 40_000 / 1e9);

  const from = new Date(now - DAY).toISOString();
  const to = new Date(now + DAY).toISOString();
  const csv = execFileSync(
    process.execPath,
    [
      '--import=tsx',
      path.join(__dirname, '..', '..', 'scripts', 'chargeback.ts'),
      '--from',
      from,
      '--to',
      to,
      '--format',
      'csv',
      '--namespace',
      keys.namespace,
      '--redis',
      process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    ],
    { encoding: 'utf8' },
  );
  const lines = csv.trim().split('\n');
  t.is(
    lines[0],
    'tenant,model,requests,cache_hits,estimated,settled_by_expiry,downgraded,prompt_tokens,completion_tokens,cached_tokens,cost_usd',
  );
  t.is(lines.length, 4);
  t.true(lines[3]?.startsWith('globex,gpt-4o,1,0,0,0,0,7,3,0,'));
});
