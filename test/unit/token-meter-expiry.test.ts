/**
 * The sweep of expired reservations is one piece of Lua (includes/budget-expiry.lua) in two
 * scripts: the reserve runs it first, budget-sweep-4.lua runs it alone. And the keys the timer
 * sweep finds by SCAN map back to the tenant and period that made them, and nothing else does.
 */
import test from 'ava';
import { createKeyspace } from '../../lib/redis/keys';
import { productScript } from '../fixtures/redis/product-scripts';
import { parseTenantId } from '../../lib/tenant/tenant-id';

test('budget-reserve-4 and budget-sweep-4 run the one sweep, on their own four keys', (t) => {
  for (const [name, call] of [
    ['budget-reserve-4', 'settle_expired(KEYS[1], KEYS[2], KEYS[3], KEYS[4], now, 100, key_ttl)'],
    ['budget-sweep-4', 'settle_expired(KEYS[1], KEYS[2], KEYS[3], KEYS[4], now, limit, ttl)'],
  ] as const) {
    const script = productScript(name);
    t.true(
      script.includes.some((i) => i.endsWith('budget-expiry.lua')),
      `${name} includes the sweep`,
    );
    t.true(script.source.includes(call), `${name} calls it`);
    t.true(script.source.includes("redis.call('XADD', ledger"), 'the sweep writes the ledger');
    t.true(script.source.includes("redis.call('SADD', settled, old) == 1"), 'once per request id');
  }
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
