/**
 * The sweep of expired reservations is one piece of Lua in two scripts (the reserve runs it
 * first; budget-sweep-4.lua runs it alone) until lib/redis/lua-script.ts resolves
 * `--- @include`: the two copies must stay the same text. And the keys the timer sweep finds
 * by SCAN map back to the tenant and period that made them, and nothing else does.
 */
import test from 'ava';
import { createKeyspace } from '../../lib/redis/keys';
import { loadScript } from '../../lib/redis/lua-script';
import { parseTenantId } from '../../lib/tenant/tenant-id';

function sweepBlock(name: string): string | undefined {
  const m = /-- expiry-sweep:begin[\s\S]*?-- expiry-sweep:end/.exec(loadScript(name).source);
  return m?.[0];
}

test('budget-reserve-4 and budget-sweep-4 carry the same sweep', (t) => {
  const reserve = sweepBlock('budget-reserve-4');
  const sweep = sweepBlock('budget-sweep-4');
  t.truthy(reserve);
  t.true((reserve ?? '').includes("redis.call('XADD', KEYS[4]"), 'the sweep writes the ledger');
  t.true((reserve ?? '').includes("redis.call('SADD', KEYS[3], old) == 1"), 'once per request id');
  t.is(sweep, reserve);
  // Each script calls it.
  t.regex(loadScript('budget-reserve-4').source, /\n[^-\n]*settle_expired\(now, 100, key_ttl\)/);
  t.regex(loadScript('budget-sweep-4').source, /\n[^-\n]*settle_expired\(now, limit, ttl\)/);
});

test('a reservation set key maps back to its tenant and period; other keys do not', (t) => {
  const keys = createKeyspace('it-ns_1');
  const acme = parseTenantId('acme-1_x');
  const key = keys.budgetReservations(acme, '2026-12-05-14');
  t.deepEqual(keys.budgetReservationsOf(key), { tenant: 'acme-1_x', period: '2026-12-05-14' });
  t.true(matchesGlob(keys.budgetReservationsPattern(), key));
  for (const other of [
    keys.budget(acme, '2026-12'),
    keys.budgetSettled(acme, '2026-12'),
    keys.usageLedger(acme, '2026-12'),
    createKeyspace('other').budgetReservations(acme, '2026-12'),
    `${key}:x`,
    'it-ns_1:{t:a}b}:budget-res:2026-12',
  ]) {
    t.is(keys.budgetReservationsOf(other), null, other);
  }
  t.false(matchesGlob(keys.budgetReservationsPattern(), keys.budget(acme, '2026-12')));
});

/** Redis's MATCH glob, for the `*` and `{}` literals the pattern uses. */
function matchesGlob(glob: string, s: string): boolean {
  const re = glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${re}$`).test(s);
}
