/**
 * tenant-cache and token-meter together, as kong.yml chains them (tenant-cache at 900 answers
 * a hit from access; token-meter's log still runs and records it), through the gateway
 * (harness, or the real Kong with GATEWAY=kong) against the real Redis (and Milvus for the
 * semantic hit): a hit is a ledger entry `cache_hit=1` with 0 upstream tokens and leaves the
 * budget untouched; a miss is an entry with the upstream's real usage, charged to the budget.
 */
import test from 'ava';
import { parseLedgerFields, type StoredLedgerEntry } from '../../plugins/token-meter/ledger';
import { periodAt } from '../../plugins/token-meter/period';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import {
  askSem,
  question,
  sharedSemanticDoor,
  tag,
  until,
  type SemanticDoor,
} from '../helpers/semantic-door';

const door = sharedSemanticDoor(test);

const Q = 'how many seats does the enterprise contract include this year';
const NEAR = 'How many seats does the enterprise contract include this year?';

async function ledger(d: SemanticDoor, tenant: string): Promise<StoredLedgerEntry[]> {
  const key = d.keyspace.usageLedger(parseTenantId(tenant), periodAt('month', Date.now()).id);
  const entries = await d.redis.xRange(key, '-', '+');
  return (entries ?? []).map((e) => parseLedgerFields(e.message as Record<string, string>));
}

async function ledgerOf(d: SemanticDoor, tenant: string, n: number): Promise<StoredLedgerEntry[]> {
  let out: StoredLedgerEntry[] = [];
  await until(`${n} ledger entries of ${tenant}`, async () => {
    out = await ledger(d, tenant);
    return out.length >= n;
  });
  return out;
}

async function usedTokens(d: SemanticDoor, tenant: string): Promise<number> {
  const key = d.keyspace.budget(parseTenantId(tenant), periodAt('month', Date.now()).id);
  return Number((await d.redis.hGet(key, 'used_tokens')) ?? 0);
}

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
}
const usageOf = (r: { res: { json: unknown } }) => (r.res.json as { usage: Usage }).usage;

for (const [kind, route, tenant, second] of [
  ['exact', 'ai', 'meterco', Q],
  ['semantic', 'sem', 'semmeter', NEAR],
] as const) {
  test.serial(
    `${kind} hit: in the ledger as a cache hit with 0 tokens, the budget not charged`,
    async (t) => {
      const d = door();
      const id = tag();
      const before = (await ledger(d, tenant)).length;
      const miss = await askSem(d, tenant, route, question(Q, id), {
        awaitSemanticStore: kind === 'semantic',
      });
      t.is(miss.res.headers['x-cache-status'], 'MISS');
      t.truthy(miss.upstream);
      const real = usageOf(miss);
      t.true(real.prompt_tokens > 0 && real.completion_tokens > 0);
      const afterMiss = await ledgerOf(d, tenant, before + 1);
      const missEntry = afterMiss[before];
      t.like(missEntry, {
        cacheHit: false,
        promptTokens: real.prompt_tokens,
        completionTokens: real.completion_tokens,
        estimated: false,
      });
      t.true((missEntry?.cost ?? 0) > 0);
      const used = await usedTokens(d, tenant);
      t.true(used >= real.prompt_tokens + real.completion_tokens, 'the miss is charged');

      const hit = await d.call(tenant, `/${route}/v1/chat/completions`, {
        body: question(second, id),
      });
      t.is(hit.res.headers['x-cache-status'], 'HIT');
      t.is(hit.res.headers['x-cache-match'], kind === 'semantic' ? 'semantic' : undefined);
      t.is(hit.upstream, undefined);
      const afterHit = await ledgerOf(d, tenant, before + 2);
      t.like(afterHit[before + 1], {
        cacheHit: true,
        promptTokens: 0,
        completionTokens: 0,
        cachedTokens: 0,
        cost: 0,
        status: 200,
      });
      t.not(afterHit[before + 1]?.requestId, missEntry?.requestId);
      t.is(await usedTokens(d, tenant), used, 'the hit is not charged to the budget');
    },
  );
}
