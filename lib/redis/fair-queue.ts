/**
 * Weighted fair queuing of one shared upstream across the cluster, in Redis: one script per
 * operation (scripts/fair-queue-{acquire,claim,release,cancel}-8.lua, sharing
 * scripts/includes/fair-queue.lua), and every gateway node calls them on the same
 * `{q:<upstream>}` keys, so all nodes schedule as one. This module is the typed call; the
 * waiting loop (poll, wake-up, give up) is the caller's.
 */
import type { TenantId } from '../tenant/tenant-id';
import type { RedisClient } from './client';
import type { FairQueueKeys } from './keys';
import { loadScript, replyNumbers, runScript } from './lua-script';

export interface UpstreamCapacity {
  /** Requests in flight upstream at once; 0 = no concurrency capacity. */
  readonly maxConcurrent: number;
  /** Upstream LLM tokens per minute; 0 = no tokens capacity. */
  readonly tokensPerMinute: number;
  /** Tokens the upstream bucket holds (burst). */
  readonly tokenBurst: number;
  /** A seat's lease: released in `log`, or expiring by itself after this. */
  readonly seatLeaseMs: number;
  /** A waiter that has not polled for this long has left; also a granted seat's claim window. */
  readonly heartbeatMs: number;
  /** Seats a flex (non-urgent) request leaves free for urgent ones; 0 = none. */
  readonly flexReserve?: number;
}

/** Scheduling class: urgent (the default) before flex, which only uses idle capacity. */
export type ServiceClass = 'urgent' | 'flex';

export interface AcquireResult {
  readonly granted: boolean;
  readonly position: number;
  readonly seatsInUse: number;
  readonly waiting: number;
  readonly retryHintMs: number;
  /**
   * `"<start>:<finish>"`, the virtual tags the ticket got on entering the queue ('' on a
   * poll): what `cancelSeat` needs to give its tenant's place back.
   */
  readonly tags: string;
}

export interface ClaimResult {
  /** true: the claim was held and is a full lease now; false: it had lapsed (nothing changed). */
  readonly claimed: boolean;
  readonly seatsInUse: number;
  readonly waiting: number;
}

export interface ReleaseResult {
  readonly was: 'seated' | 'waiting' | 'unknown';
  readonly granted: number;
  readonly seatsInUse: number;
  readonly waiting: number;
  /** Ids of the tickets admitted by this release (their waiters are also told on the channel). */
  readonly grantedIds: readonly string[];
}

export class FairQueueReplyError extends Error {
  override readonly name = 'FairQueueReplyError';
}

const numbers = <N extends number>(reply: unknown, length: N) =>
  replyNumbers(reply, length, 'fair-queue', (m) => new FairQueueReplyError(m));

/** The scripts, one per operation; each takes the queue's 8 keys (`FairQueueKeys.all`). */
const script = {
  acquire: () => loadScript('fair-queue-acquire-8'),
  claim: () => loadScript('fair-queue-claim-8'),
  release: () => loadScript('fair-queue-release-8'),
  cancel: () => loadScript('fair-queue-cancel-8'),
} as const;

/** ARGV[1..8] of every fair-queue script. */
function commonArgs(
  ticket: string,
  cap: UpstreamCapacity,
  channel: string,
): Array<string | number> {
  const tokens = cap.tokensPerMinute > 0;
  return [
    ticket,
    Math.max(0, cap.maxConcurrent),
    tokens ? Math.max(1, cap.tokenBurst) : 0,
    tokens ? cap.tokensPerMinute / 60 : 0,
    Math.max(1, Math.ceil(cap.seatLeaseMs)),
    Math.max(1, Math.ceil(cap.heartbeatMs)),
    channel,
    Math.max(0, Math.floor(cap.flexReserve ?? 0)),
  ];
}

/**
 * Enters the queue (first call), renews the heartbeat and polls (later calls), or claims a
 * seat granted meanwhile. `width` is the request's token estimate, `weight` its tenant's.
 */
export async function acquireSeat(
  client: RedisClient,
  keys: FairQueueKeys,
  cap: UpstreamCapacity,
  ticket: string,
  tenant: TenantId,
  weight: number,
  width: number,
  serviceClass: ServiceClass = 'urgent',
): Promise<AcquireResult> {
  const reply = await runScript(client, script.acquire(), keys.all, [
    ...commonArgs(ticket, cap, keys.channel),
    tenant,
    weight,
    Math.max(1, Math.ceil(width)),
    serviceClass,
  ]);
  const tags: unknown = Array.isArray(reply) ? reply[5] : undefined;
  if (!Array.isArray(reply) || reply.length !== 6 || typeof tags !== 'string') {
    throw new FairQueueReplyError(`unexpected fair-queue reply: ${JSON.stringify(reply)}`);
  }
  const [granted, position, seats, waiting, hint] = numbers(reply.slice(0, 5), 5);
  return {
    granted: granted === 1,
    position,
    seatsInUse: seats,
    waiting,
    retryHintMs: hint,
    tags,
  };
}

/**
 * Makes a seat granted to this ticket while its waiter was away (a claim, held for the
 * heartbeat window) a full lease. Never enters the queue: a claim that comes after its window
 * answers `claimed: false` and changes nothing, since its request has already gone on.
 */
export async function claimSeat(
  client: RedisClient,
  keys: FairQueueKeys,
  cap: UpstreamCapacity,
  ticket: string,
): Promise<ClaimResult> {
  const reply = await runScript(
    client,
    script.claim(),
    keys.all,
    commonArgs(ticket, cap, keys.channel),
  );
  const [claimed, seats, waiting] = numbers(reply, 3);
  return { claimed: claimed === 1, seatsInUse: seats, waiting };
}

/**
 * Frees the ticket's seat (request done: `correction` = actual - estimated tokens) or its
 * place in the queue (waiter gave up), and admits whoever is next.
 */
export async function releaseSeat(
  client: RedisClient,
  keys: FairQueueKeys,
  cap: UpstreamCapacity,
  ticket: string,
  correction = 0,
): Promise<ReleaseResult> {
  return releaseReply(
    await runScript(client, script.release(), keys.all, [
      ...commonArgs(ticket, cap, keys.channel),
      Math.round(correction),
    ]),
  );
}

/**
 * Undoes an `acquireSeat` whose request will not run (its tenant's limits refused it in the
 * same round trip): leaves the queue or frees the seat, hands the upstream tokens back
 * (`width`, when it had been granted), and puts the tenant's finish tag back to where it was
 * (`acquired.tags`) unless a later request of the tenant already built on it.
 */
export async function cancelSeat(
  client: RedisClient,
  keys: FairQueueKeys,
  cap: UpstreamCapacity,
  ticket: string,
  tenant: TenantId,
  serviceClass: ServiceClass,
  width: number,
  tags: string,
): Promise<ReleaseResult> {
  return releaseReply(
    await runScript(client, script.cancel(), keys.all, [
      ...commonArgs(ticket, cap, keys.channel),
      // The grant took min(width, burst) upstream tokens (acquire's width is at least 1).
      -Math.min(Math.max(1, Math.ceil(width)), Math.max(1, cap.tokenBurst)),
      tenant,
      serviceClass,
      tags,
    ]),
  );
}

function releaseReply(reply: unknown): ReleaseResult {
  const ids: unknown = Array.isArray(reply) ? reply[4] : undefined;
  if (!Array.isArray(reply) || typeof ids !== 'string') {
    throw new FairQueueReplyError(`unexpected fair-queue reply: ${JSON.stringify(reply)}`);
  }
  const [was, granted, seats, waiting] = numbers(reply.slice(0, 4), 4);
  return {
    was: was === 1 ? 'seated' : was === 2 ? 'waiting' : 'unknown',
    granted,
    seatsInUse: seats,
    waiting,
    grantedIds: grantedTickets(ids),
  };
}

/** Ids of tickets granted for other waiters, from a message on `FairQueueKeys.channel`. */
export function grantedTickets(message: string): string[] {
  return message.split(',').filter((id) => id.length > 0);
}
