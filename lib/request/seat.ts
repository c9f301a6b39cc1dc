/**
 * The upstream seat, taken where the upstream is chosen.
 *
 * tenant-ratelimit admits a request against its tenant's limits early (a cheap refusal), but
 * the shared upstream's seat is the scarcest thing the chain holds: taken at admission, it is
 * held (or waited for) while the cache, the budget and retrieval run, and a cache hit takes a
 * seat it never uses. So, in the co-hosted chain process, when circuit-breaker runs on the same
 * route, tenant-ratelimit leaves a `SeatHandOff` in the request's scope instead of taking the
 * seat, and circuit-breaker takes it once it has chosen the upstream:
 * - a request answered before circuit-breaker (a cache hit, a budget refusal) never takes or
 *   waits for a seat;
 * - the seat is the chosen upstream's: a request routed to another upstream (a tenant's own
 *   deployment) does not wait for the shared seats (tenant-ratelimit's `queue.upstream`).
 *
 * tenant-ratelimit knows circuit-breaker is on its route because circuit-breaker marks its
 * route here on every request it admits (`markSeatTaker`), keyed by the plugin configs'
 * `route_id` and `service_id` (Kong adds both to every plugin's config). Until circuit-breaker
 * has run once on a route, and in any layout where the two plugins run in different
 * processes, tenant-ratelimit takes the seat itself, as it always did. If circuit-breaker is
 * removed from the route, the first request that reaches the upstream with its seat never
 * taken makes tenant-ratelimit forget the route (`forgetSeatTaker`, from its log phase): one
 * request per gateway node may go unseated after such a config change, never more.
 */
import type { KongPdk } from '../pdk/kong';
import { slot } from './scope';

/** Where circuit-breaker sends the request. */
export interface SeatTarget {
  /** circuit-breaker's name of the upstream, `service:<name>` for the route's own service. */
  readonly label: string;
  /** True for the route's own service (Kong's target, not one of circuit-breaker's upstreams). */
  readonly service: boolean;
}

/** What tenant-ratelimit leaves for circuit-breaker. */
export interface SeatHandOff {
  /**
   * Takes (or waits in the fair queue for) this request's seat on `target`; returns at once
   * when `target` is not an upstream whose capacity tenant-ratelimit queues for. Throws the
   * OpenAI-style 503 `upstream_saturated` when no seat freed up in time. Called at most once.
   */
  take(kong: KongPdk, target: SeatTarget): Promise<void>;
}

export const SEAT_HAND_OFF = slot<SeatHandOff>('seat_hand_off');

/** How long a route stays known to have circuit-breaker without it being seen again. */
export const SEAT_TAKER_TTL_MS = 10 * 60_000;

/** Routes (route_id|service_id) on which circuit-breaker ran, with when it last did. */
const takers = new Map<string, number>();

interface PluginScope {
  route_id?: unknown;
  service_id?: unknown;
}

/** The route and service a plugin config is attached to, as Kong adds them to it. */
export function routeKeyOf(config: unknown): string {
  const c = (config ?? {}) as PluginScope;
  const id = (v: unknown) => (typeof v === 'string' ? v : '*');
  return `${id(c.route_id)}|${id(c.service_id)}`;
}

export function markSeatTaker(routeKey: string, now = Date.now()): void {
  takers.set(routeKey, now);
}

export function hasSeatTaker(routeKey: string, now = Date.now()): boolean {
  const seen = takers.get(routeKey);
  if (seen === undefined) return false;
  if (now - seen > SEAT_TAKER_TTL_MS) {
    takers.delete(routeKey);
    return false;
  }
  return true;
}

export function forgetSeatTaker(routeKey: string): void {
  takers.delete(routeKey);
}
