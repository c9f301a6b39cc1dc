/**
 * The fault tests' front door and what they check after each fault (test/plugins/faults-*).
 *
 * The door is kong.yml's whole chain (startKongYmlDoor) for two tenants of the run's own, one
 * per plan (A pro, B free), with what a fault test must reach changed: every Redis-backed
 * plugin on the Redis given (a private one that can be killed or paused), Milvus at an address
 * given (a proxy that can be cut), embeddings at a URL given (a mock that can be slowed), and
 * TTLs short enough to be seen expiring within a test. The rest is kong.yml as shipped.
 *
 * `startLoad` keeps a few requests in flight from both tenants (chat and streamed chat, from a
 * small pool of questions both tenants ask word for word, so a cache that crossed tenants
 * would serve one tenant's answer to the other). `checkAfterFault` then asserts what the
 * issue asks after every fault:
 * - no 5xx except those the fault's row of docs/operations.md lists;
 * - no answer produced for another tenant (every answer's id maps to the upstream request that
 *   produced it, which must carry the asker's X-Tenant-Id; the text must answer the question);
 * - the ledger: every 200 settled exactly once, no entry for a request not answered 200, no
 *   entry written twice, none for a request never sent;
 * - nothing held for good: every key of the run has a TTL, and every seat, lease and
 *   reservation still held expires within its TTL;
 * - served again: the time from the fault's end to each tenant's next 200, within a bound.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { createClient } from 'redis';
import { mockAnswerText } from '../../mock-upstream/chat';
import type { MockUpstream } from '../../mock-upstream/index';
import type { OnClose } from './frontdoor';
import { startKongYmlDoor, type KongYmlDoor, type KongYmlEntry } from './kong-yml-door';
import { startExtraUpstream } from './upstreams';

export interface FaultTenant {
  id: string;
  key: string;
  plan: 'pro' | 'free';
}

export interface FaultDoorOptions {
  /** The Redis of every Redis-backed plugin (default: REDIS_URL, the shared one). */
  redisUrl?: string;
  /** Milvus of retrieval-injector and of tenant-cache's semantic cache. */
  milvusAddress?: string;
  /** Embeddings endpoint of retrieval-injector and the semantic cache (default: a mock of its own). */
  embeddingsUrl?: string;
  /** Changes after the fault door's own (a tenant's limits, a plugin's timeouts). */
  adjust?: (
    p: KongYmlEntry,
    upstreamUrl: string,
    tenants: { A: FaultTenant; B: FaultTenant },
  ) => void;
  /** kong.conf settings (the real Kong), e.g. an Admin API listener. */
  kongConf?: Record<string, string>;
  nodes?: number;
}

export interface FaultDoor extends KongYmlDoor {
  A: FaultTenant;
  B: FaultTenant;
  redisUrl: string;
  /** Most a seat, lease or reservation can be held without its log phase, in ms. */
  maxHoldMs: number;
}

/** TTLs of the fault door (kong.yml's are minutes: a test could not watch them end). */
export const FAULT_TTLS = {
  /** token-meter `reservation_ttl_seconds` (its minimum). */
  reservationSeconds: 10,
  /** tenant-ratelimit `queue.seat_ttl_seconds`. */
  seatSeconds: 10,
  /** tenant-ratelimit `queue.max_wait_ms`: a tenant lease is this plus the seat TTL. */
  queueWaitMs: 3000,
  /**
   * Every Redis command deadline (kong.yml: the defaults, 250 ms for tenant-ratelimit and
   * token-meter, 100 ms for tenant-cache): the shared 2-core test machine stalls the shared
   * Redis past 250 ms at times, which would refuse requests no fault caused.
   */
  redisDeadlineMs: 1000,
  /** circuit-breaker `breaker.half_open_after_ms`. */
  halfOpenMs: 2000,
  /** The service's `read_timeout` (kong.yml: 120 s), for an upstream that hangs. */
  readTimeoutMs: 3000,
};

const hex = (n: number): string => randomBytes(n).toString('hex');

export async function startFaultDoor(
  onClose: OnClose,
  opts: FaultDoorOptions = {},
): Promise<FaultDoor> {
  const A: FaultTenant = { id: `fa${hex(4)}`, key: '', plan: 'pro' };
  const B: FaultTenant = { id: `fb${hex(4)}`, key: '', plan: 'free' };
  A.key = `${A.id}-key`;
  B.key = `${B.id}-key`;
  const redisUrl = opts.redisUrl ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const spool = mkdtempSync(path.join(tmpdir(), 'kta-fault-spool-'));
  onClose(() => rmSync(spool, { recursive: true, force: true }));
  const semCollection = `kta_fault_s_${hex(5)}`;
  // Embeddings from a mock of their own: a test slowing the LLM upstream slows only the chat.
  const embeddingsUrl =
    opts.embeddingsUrl ?? `${(await startExtraUpstream(onClose)).url}/v1/embeddings`;
  const roomy = {
    requests_per_minute: 60_000,
    request_burst: 5000,
    tokens_per_minute: 50_000_000,
    token_burst: 5_000_000,
    max_concurrent: 32,
  };
  const door = await startKongYmlDoor(
    onClose,
    (p, upstreamUrl) => {
      const c = p.config as Record<string, unknown>;
      const tenants = (c.tenants ?? {}) as Record<string, unknown>;
      if (p.name === 'tenant-ratelimit') {
        c.redis = {
          ...(c.redis as object),
          url: redisUrl,
          timeout_ms: FAULT_TTLS.redisDeadlineMs,
        };
        // The load is the fault tests' own: room for it under each plan's caps.
        c.tenants = { ...tenants, [A.id]: roomy, [B.id]: roomy };
        c.queue = {
          ...(c.queue as object),
          max_wait_ms: FAULT_TTLS.queueWaitMs,
          seat_ttl_seconds: FAULT_TTLS.seatSeconds,
        };
      }
      if (p.name === 'tenant-cache') {
        c.redis = { ...(c.redis as object), url: redisUrl, timeout_ms: FAULT_TTLS.redisDeadlineMs };
        const sem = c.semantic as Record<string, Record<string, unknown>>;
        sem.milvus = {
          ...sem.milvus,
          ...(opts.milvusAddress ? { address: opts.milvusAddress } : {}),
          collection: semCollection,
        };
        sem.embeddings = { ...sem.embeddings, url: embeddingsUrl };
      }
      if (p.name === 'token-meter') {
        c.redis = { ...(c.redis as object), url: redisUrl, timeout_ms: FAULT_TTLS.redisDeadlineMs };
        c.reservation_ttl_seconds = FAULT_TTLS.reservationSeconds;
        c.spool_dir = spool;
        c.replay_interval_seconds = 1;
      }
      if (p.name === 'retrieval-injector') {
        c.redis = { ...(c.redis as object), url: redisUrl, timeout_ms: FAULT_TTLS.redisDeadlineMs };
        if (opts.milvusAddress) c.milvus = { ...(c.milvus as object), address: opts.milvusAddress };
        c.embeddings = { ...(c.embeddings as object), url: embeddingsUrl };
      }
      if (p.name === 'circuit-breaker') {
        c.breaker = { ...(c.breaker as object), half_open_after_ms: FAULT_TTLS.halfOpenMs };
      }
      opts.adjust?.(p, upstreamUrl, { A, B });
    },
    [A, B].map((x) => ({
      username: `${x.id}-app`,
      custom_id: x.id,
      tags: [`plan:${x.plan}`],
      keyauth_credentials: [{ key: x.key }],
    })),
    [],
    {
      service: { read_timeout: FAULT_TTLS.readTimeoutMs },
      ...(opts.kongConf ? { kongConf: opts.kongConf } : {}),
    },
    opts.nodes ?? 1,
  );
  // The door removes its keys from the shared Redis; a private one goes with its server.
  return {
    ...door,
    A,
    B,
    redisUrl,
    maxHoldMs:
      Math.max(FAULT_TTLS.reservationSeconds, FAULT_TTLS.seatSeconds) * 1000 +
      FAULT_TTLS.queueWaitMs,
  };
}

/** One request of the load, as the client saw it. */
export interface Outcome {
  tenant: FaultTenant;
  question: string;
  stream: boolean;
  status: number;
  /** `error.code` (or `error.type`) of an error body; 'none' when there is none. */
  code: string;
  /** X-Kong-Request-Id: the id token-meter settles by. */
  rid: string | undefined;
  /** The answer's id (`chatcmpl-mock-<n>`), and its text, when one came. */
  answerId: string | undefined;
  content: string;
  /** A stream that ended with [DONE] (or a whole JSON body). */
  complete: boolean;
  cache: string | undefined;
  sentAt: number;
  endAt: number;
  /** A transport error on the client's side (status 0). */
  error?: string;
}

/**
 * Questions of random words: kong.yml's semantic cache (plan pro) answers a near-duplicate
 * question of the same tenant from its earlier answer, by design; "question 1" and
 * "question 2" would be near-duplicates. Random words are not.
 */
export function randomQuestion(): string {
  return Array.from({ length: 5 }, () => hex(4)).join(' ');
}

/** The pool both tenants ask word for word (exact cache hits, each tenant its own). */
export const QUESTIONS = Array.from({ length: 6 }, randomQuestion);

/** Sends one chat request (streamed or not) and reads all of its answer. */
export function ask(
  door: { url: string },
  tenant: FaultTenant,
  question: string,
  stream: boolean,
  opts: { abortAfterFirstChunk?: boolean; extra?: Record<string, unknown> } = {},
): Promise<Outcome> {
  const body = JSON.stringify({
    model: 'gpt-4o-mini',
    temperature: 0,
    messages: [{ role: 'user', content: question }],
    ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
    ...opts.extra,
  });
  const sentAt = Date.now();
  const base = { tenant, question, stream, sentAt };
  return new Promise((resolve) => {
    const req = http.request(
      `${door.url}/v1/chat/completions`,
      {
        method: 'POST',
        agent: false,
        headers: {
          apikey: tenant.key,
          'content-type': 'application/json',
          'content-length': String(Buffer.byteLength(body)),
        },
      },
      (res) => {
        const rid = res.headers['x-kong-request-id'] as string | undefined;
        const cache = res.headers['x-cache-status'] as string | undefined;
        let text = '';
        const finish = (error?: string): void => {
          resolve({
            ...base,
            ...parseAnswer(res.statusCode ?? 0, text, stream),
            rid,
            cache,
            endAt: Date.now(),
            ...(error ? { error } : {}),
          });
        };
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
          if (opts.abortAfterFirstChunk && text.includes('\n\n')) {
            // The client goes away mid-stream.
            req.destroy();
            finish('aborted by the client');
          }
        });
        res.on('end', () => finish());
        res.on('error', (e) => finish(e.message));
        res.on('aborted', () => finish('the response was cut'));
      },
    );
    req.on('error', (e) =>
      resolve({
        ...base,
        status: 0,
        code: 'none',
        rid: undefined,
        answerId: undefined,
        content: '',
        complete: false,
        cache: undefined,
        endAt: Date.now(),
        error: e.message,
      }),
    );
    req.end(body);
  });
}

function parseAnswer(
  status: number,
  text: string,
  stream: boolean,
): Pick<Outcome, 'status' | 'code' | 'answerId' | 'content' | 'complete'> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const err = (json as { error?: { code?: unknown; type?: unknown } } | undefined)?.error;
  const code =
    err && typeof err === 'object'
      ? String(err.code ?? err.type ?? 'none')
      : (json as { message?: unknown } | undefined)?.message !== undefined
        ? 'kong'
        : 'none';
  if (status !== 200) return { status, code, answerId: undefined, content: '', complete: false };
  if (!stream || !text.startsWith('data:')) {
    const j = json as
      { id?: string; choices?: Array<{ message?: { content?: string } }> } | undefined;
    return {
      status,
      code,
      answerId: j?.id,
      content: j?.choices?.[0]?.message?.content ?? '',
      complete: j !== undefined,
    };
  }
  let answerId: string | undefined;
  let content = '';
  let complete = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith('data: ')) continue;
    const data = line.slice(6).trim();
    if (data === '[DONE]') {
      complete = true;
      continue;
    }
    try {
      const ev = JSON.parse(data) as {
        id?: string;
        choices?: Array<{ delta?: { content?: string } }>;
      };
      answerId ??= ev.id;
      content += ev.choices?.[0]?.delta?.content ?? '';
    } catch {
      // a line cut in the middle
    }
  }
  return { status, code, answerId, content, complete };
}

export interface Load {
  outcomes: Outcome[];
  /** Stops sending, waits for the requests in flight, returns every outcome. */
  stop(): Promise<Outcome[]>;
}

/**
 * `workers` loops, each sending one request after another (bounded: at most `workers` in
 * flight), alternating the tenants, every third request streamed.
 */
export function startLoad(door: FaultDoor, workers = 4, opts: { pauseMs?: number } = {}): Load {
  const outcomes: Outcome[] = [];
  let running = true;
  let n = 0;
  const loops = Array.from({ length: workers }, async (_, w) => {
    while (running) {
      const i = n++;
      const tenant = (i + w) % 2 === 0 ? door.A : door.B;
      // Half from the pool both tenants ask (cache hits), half new (the upstream's work).
      const question =
        i % 2 === 0 ? (QUESTIONS[(i / 2) % QUESTIONS.length] as string) : randomQuestion();
      outcomes.push(await ask(door, tenant, question, i % 3 === 0));
      // A refused request answers at once: without a pause the loop would spin.
      await new Promise((r) => setTimeout(r, opts.pauseMs ?? 40));
    }
  });
  return {
    outcomes,
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return outcomes;
    },
  };
}

/**
 * Holds a fault for at least `minMs` and until `seen()` (the load met it), at most `maxMs`: on
 * a loaded machine a few seconds may pass before a request of the load reaches the fault.
 */
export async function holdFault(seen: () => boolean, minMs: number, maxMs = 20_000): Promise<void> {
  const start = Date.now();
  while (Date.now() - start < maxMs && (Date.now() - start < minMs || !seen()))
    await new Promise((r) => setTimeout(r, 100));
}

/**
 * After a fault ends, keeps the load running until each tenant has been served again (a 200 for
 * a request sent after `restoredAt`) or `boundMs` has passed, then `settleMs` more, so the
 * recovery is judged against its stated bound rather than a fixed wait shorter than it.
 */
export async function untilServedAgain(
  door: FaultDoor,
  load: Load,
  restoredAt: number,
  boundMs: number,
  settleMs = 1500,
): Promise<void> {
  const served = (tenant: FaultDoor['A']): boolean =>
    load.outcomes.some((o) => o.tenant === tenant && o.status === 200 && o.sentAt >= restoredAt);
  while (Date.now() - restoredAt < boundMs && !(served(door.A) && served(door.B)))
    await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, settleMs));
}

export interface FaultExpectations {
  /** `<status> <code>` of every 5xx the docs list for this fault (status 0: a transport error). */
  allowed: string[];
  /** When the fault ended (the dependency back), for the recovery time. */
  restoredAt: number;
  /** The stated bound on the recovery, ms. */
  recoveryBoundMs: number;
  /** Outcomes a 200 may come with incomplete (a stream the upstream cut). */
  incompleteAllowed?: boolean;
  /**
   * 200s that may go unbilled: their log phase ran while no plugin server could take it (the
   * chain's process killed). Their reservations must still end by TTL (checked with the rest).
   */
  unbilledAllowed?: (o: Outcome) => boolean;
  /**
   * Refused requests that may be billed at expiry (an entry `settled_by: expiry`, estimated):
   * the kill came after token-meter's reserve, Kong refused the request, and its log phase, the
   * one thing that would have released the reservation, found no process. Redis then holds a
   * reservation like any other whose log was lost, and the expiry policy bills it (lost logs
   * are billed, docs/operations.md). Any other entry for a request not answered 200 fails.
   */
  expiryBilledAllowed?: (o: Outcome) => boolean;
}

export interface FaultReport {
  statuses: Record<string, number>;
  /** ms from `restoredAt` to each tenant's first 200 sent after it. */
  recoveryMs: Record<string, number>;
  ledgerEntries: number;
  heldAtEnd: number;
}

type Redis = ReturnType<typeof createClient>;

interface LedgerEntry {
  id: string;
  rid: string;
  fields: Record<string, string>;
}

async function ledgerOf(
  redis: Redis,
  door: FaultDoor,
  tenant: FaultTenant,
): Promise<LedgerEntry[]> {
  const out: LedgerEntry[] = [];
  for await (const keys of redis.scanIterator({
    MATCH: `${door.namespace}tm:{t:${tenant.id}}:ledger:*`,
  })) {
    for (const key of keys) {
      for (const e of (await redis.xRange(key, '-', '+')) ?? []) {
        if (!e) continue;
        const fields = (e.message ?? {}) as Record<string, string>;
        out.push({ id: e.id, rid: fields.rid ?? '', fields });
      }
    }
  }
  return out;
}

/** Whatever is left when `outcomes` are final; polls the ledger until settled (spool replay). */
export async function checkAfterFault(
  t: ExecutionContext,
  door: FaultDoor,
  outcomes: Outcome[],
  expect: FaultExpectations,
): Promise<FaultReport> {
  const statuses: Record<string, number> = {};
  for (const o of outcomes) {
    const k = `${o.status} ${o.code}`;
    statuses[k] = (statuses[k] ?? 0) + 1;
  }
  // 1. No 5xx (or transport error) the docs do not list for this fault.
  const unlisted = outcomes.filter(
    (o) => (o.status === 0 || o.status >= 500) && !expect.allowed.includes(`${o.status} ${o.code}`),
  );
  t.deepEqual(
    [...new Set(unlisted.map((o) => `${o.status} ${o.code}${o.error ? ` (${o.error})` : ''}`))],
    [],
    'a 5xx the docs do not list for this fault',
  );

  // 2. No answer of another tenant: each answer's id names the upstream request that made it.
  const byResponseId = new Map<string, string>();
  for (const r of door.upstream.received) {
    const tenant = r.headers['x-tenant-id'];
    if (r.responseId && typeof tenant === 'string')
      byResponseId.set(`chatcmpl-${r.responseId}`, tenant);
  }
  const answered = outcomes.filter((o) => o.status === 200);
  // A JSON answer cut in half has no readable id (and no text to leak): nothing to map.
  const crossed = answered.filter((o) => {
    if (!o.complete && o.answerId === undefined) return false;
    // Kong's own error body under the upstream's 200 (a buffered answer cut): no answer in it.
    if (o.code !== 'none') return false;
    const producedFor = o.answerId ? byResponseId.get(o.answerId) : undefined;
    return producedFor !== o.tenant.id;
  });
  t.deepEqual(
    crossed.map(
      (o) =>
        `${o.tenant.id} got ${o.answerId ?? 'no id'} (cache ${o.cache ?? '-'}, stream ${o.stream}, complete ${o.complete})`,
    ),
    [],
    'an answer not produced for the asking tenant',
  );
  const wrongText = answered.filter(
    (o) =>
      o.code === 'none' &&
      (o.complete || !expect.incompleteAllowed) &&
      o.content !== mockAnswerText(o.question),
  );
  t.deepEqual(
    wrongText.map((o) => `${o.question} -> ${o.content.slice(0, 80)} (complete ${o.complete})`),
    [],
    'an answer to another question, or cut short',
  );

  // 3. The ledger, once every log phase and spool replay has run.
  const redis: Redis = createClient({ url: door.redisUrl });
  await redis.connect();
  try {
    const sent = new Set(outcomes.map((o) => o.rid).filter((r): r is string => r !== undefined));
    // A 200 carrying Kong's own error body (a buffered answer the upstream cut: kong/init.lua
    // Kong.response, res.truncated) answered nothing: token-meter bills it not, so no entry.
    const billable = new Set(
      answered
        .filter((o) => o.code === 'none')
        .map((o) => o.rid)
        .filter((r): r is string => r !== undefined),
    );
    let entries: LedgerEntry[] = [];
    const deadline = Date.now() + 20_000;
    for (;;) {
      entries = [
        ...(await ledgerOf(redis, door, door.A)),
        ...(await ledgerOf(redis, door, door.B)),
      ];
      const have = new Set(entries.map((e) => e.rid));
      const mayLose = (r: string) =>
        answered.some((o) => o.rid === r && expect.unbilledAllowed?.(o) === true);
      if ([...billable].every((r) => have.has(r) || mayLose(r)) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const counts = new Map<string, number>();
    for (const e of entries) counts.set(e.rid, (counts.get(e.rid) ?? 0) + 1);
    t.deepEqual(
      [...counts].filter(([, n]) => n > 1).map(([r]) => r),
      [],
      'a ledger entry written twice',
    );
    const mayLose = new Set(answered.filter((o) => expect.unbilledAllowed?.(o)).map((o) => o.rid));
    const lost = [...billable].filter((r) => !counts.has(r));
    t.deepEqual(
      lost.filter((r) => !mayLose.has(r)),
      [],
      'a 200 with no ledger entry (lost)',
    );
    const mine = entries.filter((e) => sent.has(e.rid));
    const expiryAllowed = new Set(
      outcomes.filter((o) => expect.expiryBilledAllowed?.(o)).map((o) => o.rid),
    );
    const byExpiry = (e: LedgerEntry) =>
      e.fields.settled_by === 'expiry' && e.fields.estimated === '1' && expiryAllowed.has(e.rid);
    // The load's requests only (a test may send others of its own before or after).
    t.deepEqual(
      mine
        .filter((e) => !billable.has(e.rid) && !byExpiry(e))
        .map((e) => `${e.rid} ${e.fields.status ?? ''} ${e.fields.settled_by ?? ''}`),
      [],
      'a ledger entry for a request that was not answered 200 by the upstream',
    );

    // 4. Nothing held for good: every key has a TTL, every seat/lease/reservation ends by it.
    const now = Date.now();
    let held = 0;
    const forever: string[] = [];
    const late: string[] = [];
    for await (const keys of redis.scanIterator({ MATCH: `${door.namespace}*`, COUNT: 500 })) {
      for (const key of keys) {
        if ((await redis.pTTL(key)) === -1) forever.push(key);
        if ((await redis.type(key)) !== 'zset') continue;
        // Sorted sets scored by expiry (ms): tenant leases, upstream seats, budget reservations, waiters.
        if (!/:(leases|seats|budget-res:[^:]+|alive)$/.test(key)) continue;
        for (const m of await redis.zRangeWithScores(key, 0, -1)) {
          if (m.score > now) held += 1;
          if (m.score > now + door.maxHoldMs) late.push(`${key} ${m.value} ${m.score - now} ms`);
        }
      }
    }
    t.deepEqual(forever, [], 'a key without a TTL');
    t.deepEqual(late, [], 'held beyond its TTL');

    // 5. Served again: each tenant's first 200 among the requests sent after the fault ended.
    const recoveryMs: Record<string, number> = {};
    for (const tenant of [door.A, door.B]) {
      const first = outcomes
        .filter((o) => o.tenant === tenant && o.status === 200 && o.sentAt >= expect.restoredAt)
        .sort((a, b) => a.endAt - b.endAt)[0];
      t.truthy(first, `tenant ${tenant.plan} is served again after the fault`);
      if (first) {
        recoveryMs[tenant.plan] = first.endAt - expect.restoredAt;
        t.true(
          recoveryMs[tenant.plan]! <= expect.recoveryBoundMs,
          `tenant ${tenant.plan} served again ${recoveryMs[tenant.plan]} ms after the fault, bound ${expect.recoveryBoundMs} ms`,
        );
      }
    }
    const report = {
      statuses,
      recoveryMs,
      ledgerEntries: mine.length,
      unbilled: lost.length,
      heldAtEnd: held,
    };
    t.log(report);
    return report;
  } finally {
    await redis.close();
  }
}

export type { MockUpstream };
