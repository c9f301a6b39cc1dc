/**
 * The answer a cacheable miss stores, kept as it passes (kong.yml's capture snippet,
 * lib/capture/answer-snippet.lua, in post-function's body_filter) instead of Kong's buffered
 * proxying.
 *
 * Why: `kong.service.request.enable_buffering()` makes Kong proxy through an internal
 * subrequest (kong/init.lua `Kong.response`, `ngx.location.capture`) and hold the whole answer
 * before the client's first byte: measured on the real Kong, it was most of what a cacheable
 * miss cost nginx over a request the cache bypasses. The snippet only copies the chunks as
 * they pass.
 *
 * How: access sets `kong.ctx.shared.kta_cache_capture` to `max_entry_bytes` (a write in its
 * batch); the snippet answers in `kong.ctx.shared.kta_cache_answer`, which the store reads in
 * its log batch. The snippet is kong.yml's, so a route may lack it: until an instance has seen
 * an answer kept on a route, its misses there are buffered as before (the store then takes the
 * snippet's answer if there is one, else Kong's buffered body), and a miss whose answer was
 * asked for and not kept (the route lost the snippet) buffers its route's misses again. Learnt
 * per route: one tenant-cache config (a service's, a global one) may serve routes with and
 * without the snippet.
 */
import { SHARED_KEYS } from '../../lib/request/shared-keys';

export const CACHE_CAPTURE_KEY = SHARED_KEYS.cacheCapture.key;
export const CACHE_ANSWER_KEY = SHARED_KEYS.cacheAnswer.key;

/** Per instance (its ready state), the routes seen keeping answers: their misses are not buffered. */
const kept = new WeakMap<object, Set<string>>();
/** Routes remembered per instance at most (a route seen again is learnt again). */
const MAX_ROUTES = 1024;

export function routeKeepsAnswers(ready: object, routeId: string): boolean {
  return kept.get(ready)?.has(routeId) ?? false;
}

/** What the store learnt of the route: an answer kept, or one asked for and missing. */
export function noteKeptAnswer(ready: object, routeId: string, present: boolean): void {
  let routes = kept.get(ready);
  if (!present) {
    routes?.delete(routeId);
    return;
  }
  if (!routes) kept.set(ready, (routes = new Set()));
  if (routes.size >= MAX_ROUTES && !routes.has(routeId)) routes.clear();
  routes.add(routeId);
}

export type KeptAnswer =
  { readonly kind: 'body'; readonly bytes: Buffer } | { readonly kind: 'cut' };

/** The snippet's answer: its bytes, or that it was longer than the limit; undefined otherwise. */
export function readKeptAnswer(raw: unknown): KeptAnswer | undefined {
  if (typeof raw !== 'string') return undefined;
  const tag = raw.slice(0, 4);
  if (tag === 'cut;') return { kind: 'cut' };
  // ASCII only (the snippet sends anything else as base64): the string is the bytes.
  if (tag === 'all;') return { kind: 'body', bytes: Buffer.from(raw.slice(4), 'latin1') };
  if (tag === 'b64;') {
    const text = raw.slice(4);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return undefined;
    return { kind: 'body', bytes: Buffer.from(text, 'base64') };
  }
  return undefined;
}
