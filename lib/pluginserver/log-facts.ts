/**
 * What a log phase records of a finished request (its id, status, who answered, the upstream's
 * status and the latencies), read without `kong.log.serialize()` where kong.yml's pre-function
 * log snippet (lib/pluginserver/pdk-log-facts.lua) saved them in `kong.ctx.shared.kta_log_facts`.
 *
 * Why: serialize answers the whole log record (request and response headers, route, service,
 * consumer, TLS: several KB cjson-encoded by nginx, sent, then JSON.parse'd by Node) in an
 * exchange of its own, to read five fields. The saved facts are one `ctx.shared.get`, which the
 * log batch fetches together with the phase's other reads (lib/pluginserver/batch.ts), so on the
 * chain's route they cost no exchange of their own. Where the snippet is not on the route (a
 * plugin used alone, the harness, which runs no pre-function log) the read answers nil and the
 * facts come from serialize (and `response.getSource()`), as before: one more exchange there.
 */
import type { KongPdk } from '../pdk/kong';
import { SHARED_KEYS } from '../request/shared-keys';

export const LOG_FACTS_KEY = SHARED_KEYS.logFacts.key;

export interface ServedFacts {
  /** Kong's request id (X-Kong-Request-Id); null when Kong has none. */
  readonly requestId: string | null;
  /** The client-facing status (the serializer's `response.status`). */
  readonly status: number;
  /**
   * `kong.response.get_source()`: service, error or exit; null when the facts came from the
   * serializer (whose `source` cannot tell an error from an exit): `sourceOf` then asks Kong.
   */
  readonly source: string | null;
  /** The serializer's `upstream_status` ("" when no upstream was tried; "502, 200" after retries). */
  readonly upstreamStatus: string;
  /** The serializer's `latencies.proxy`: time to the upstream's response headers, -1 if none. */
  readonly proxyLatencyMs: number;
  /** The serializer's `latencies.request`: the whole request as the client saw it, -1 if none. */
  readonly requestLatencyMs: number;
}

type Obj = Record<string, unknown>;

function obj(v: unknown): Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {};
}

function num(v: unknown, fallback: number): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : fallback;
}

function text(v: unknown): string {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '';
}

function id(v: unknown): string | null {
  return typeof v === 'string' && v !== '' ? v : null;
}

/** The snippet's table, or null for anything else (absent: the snippet is not on the route). */
export function decodeLogFacts(raw: unknown): ServedFacts | null {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return null;
  const f = raw as Obj;
  if (typeof f.status !== 'number') return null;
  return {
    requestId: id(f.request_id),
    status: f.status,
    source: typeof f.source === 'string' ? f.source : null,
    upstreamStatus: text(f.upstream_status),
    proxyLatencyMs: num(f.proxy_latency, -1),
    requestLatencyMs: num(f.request_latency, -1),
  };
}

/** The same facts out of the serializer's JSON (kong.log.serialize answers a JSON string). */
export function factsFromSerialized(serialized: unknown): ServedFacts {
  let root: Obj = {};
  try {
    root = obj(typeof serialized === 'string' ? JSON.parse(serialized) : serialized);
  } catch {
    root = {};
  }
  const request = obj(root.request);
  const response = obj(root.response);
  const latencies = obj(root.latencies);
  return {
    requestId: id(request.id),
    status: num(response.status, 0),
    source: null,
    upstreamStatus: text(root.upstream_status),
    proxyLatencyMs: num(latencies.proxy, -1),
    requestLatencyMs: num(latencies.request, -1),
  };
}

/** The served facts for a log phase: the saved ones (one batched read), else the serializer's. */
export async function readServedFacts(kong: KongPdk): Promise<ServedFacts> {
  const saved = decodeLogFacts(await kong.ctx.shared.get(LOG_FACTS_KEY));
  return saved ?? factsFromSerialized(await kong.log.serialize());
}

/** Who answered: from the saved facts, else one `response.getSource()` (asked only when needed). */
export async function sourceOf(kong: KongPdk, facts: ServedFacts): Promise<string> {
  return facts.source ?? String(await kong.response.getSource());
}
