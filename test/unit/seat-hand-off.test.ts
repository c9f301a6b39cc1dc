/**
 * lib/request/seat.ts: which routes tenant-ratelimit leaves the seat on for circuit-breaker.
 * A route is known from circuit-breaker's own config (Kong adds route_id and service_id to every
 * plugin's config), forgotten when told, and forgotten by itself when not seen for a while.
 */
import test from 'ava';
import {
  SEAT_TAKER_TTL_MS,
  forgetSeatTaker,
  hasSeatTaker,
  markSeatTaker,
  routeKeyOf,
} from '../../lib/request/seat';

test('the route key is the config’s route and service; a global plugin has neither', (t) => {
  t.is(routeKeyOf({ route_id: 'r1', service_id: 's1', other: 1 }), 'r1|s1');
  t.is(routeKeyOf({ route_id: 'r1' }), 'r1|*');
  t.is(routeKeyOf({}), '*|*');
  t.is(routeKeyOf(null), '*|*');
  t.is(routeKeyOf({ route_id: 42, service_id: { id: 's' } }), '*|*', 'only strings name a route');
  t.not(routeKeyOf({ route_id: 'r1' }), routeKeyOf({ route_id: 'r2' }));
});

test('a route is a seat taker once circuit-breaker ran on it, until forgotten or stale', (t) => {
  const key = `r-${Math.random()}|s`;
  const other = `r-${Math.random()}|s`;
  const now = 1_000_000;
  t.false(hasSeatTaker(key, now), 'unknown before circuit-breaker ran');
  markSeatTaker(key, now);
  t.true(hasSeatTaker(key, now + 1000));
  t.false(hasSeatTaker(other, now + 1000), 'another route is not');
  forgetSeatTaker(key);
  t.false(hasSeatTaker(key, now + 1000), 'forgotten');
  markSeatTaker(key, now);
  t.true(hasSeatTaker(key, now + SEAT_TAKER_TTL_MS));
  t.false(hasSeatTaker(key, now + SEAT_TAKER_TTL_MS + 1), 'not seen for the TTL: unknown again');
});
