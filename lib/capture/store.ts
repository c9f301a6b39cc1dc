/**
 * Where captures live: Redis, in the tenant's keyspace (`<ns>:{t:<tenant>}:capture:<request id>`,
 * the tenant's hash slot on Redis Cluster), sealed under the tenant's key, with a TTL. Beside
 * it, a signed owner entry (`<ns>:{c:<request id>}:capture-owner`) says which tenant the
 * request id belongs to, so an operator can replay by request id alone; it carries no request
 * data and expires with the capture.
 *
 * Two single-key SETs (the keys live in different slots on a cluster), written from the log
 * phase and never awaited by a request: a failure is counted, never answered.
 */
import { withDeadline, type RedisClient } from '../redis/client';
import type { Keyspace } from '../redis/keys';
import { isInvalidTenantIdError, parseTenantId, type TenantId } from '../tenant/tenant-id';
import { openCapture, sealCapture, type CaptureKeyring } from './crypto';
import { parseCaptureRecord, type CaptureRecord } from './record';

const VALUE_PREFIX = 'v1.';

/** Seals and stores one capture and its owner entry, both expiring after `ttlSeconds`. */
export async function storeCapture(
  client: RedisClient,
  keys: Keyspace,
  keyring: CaptureKeyring,
  tenant: TenantId,
  record: CaptureRecord,
  ttlSeconds: number,
): Promise<void> {
  const sealed = sealCapture(
    keyring,
    tenant,
    record.requestId,
    Buffer.from(JSON.stringify(record), 'utf8'),
  );
  const expiration = { expiration: { type: 'EX' as const, value: ttlSeconds } };
  await Promise.all([
    withDeadline(
      client,
      client.set(
        keys.capture(tenant, record.requestId),
        VALUE_PREFIX + sealed.toString('base64'),
        expiration,
      ),
    ),
    withDeadline(
      client,
      client.set(
        keys.captureOwner(record.requestId),
        `${tenant} ${keyring.indexMac(tenant, record.requestId)}`,
        expiration,
      ),
    ),
  ]);
}

export type LoadResult =
  | { readonly kind: 'found'; readonly record: CaptureRecord; readonly ttlSeconds: number }
  /** Nothing under this tenant and request id (never captured, expired, another tenant's). */
  | { readonly kind: 'absent' }
  /** Something is there, but it does not open for this tenant and request id. */
  | { readonly kind: 'sealed_elsewhere' };

/** Loads and opens the capture of `requestId` in `tenant`'s keyspace, with its remaining TTL. */
export async function loadCapture(
  client: RedisClient,
  keys: Keyspace,
  keyring: CaptureKeyring,
  tenant: TenantId,
  requestId: string,
): Promise<LoadResult> {
  const key = keys.capture(tenant, requestId);
  const [value, ttl] = await Promise.all([
    withDeadline(client, client.get(key)),
    withDeadline(client, client.ttl(key)),
  ]);
  if (typeof value !== 'string') return { kind: 'absent' };
  if (!value.startsWith(VALUE_PREFIX)) return { kind: 'sealed_elsewhere' };
  const plain = openCapture(
    keyring,
    tenant,
    requestId,
    Buffer.from(value.slice(VALUE_PREFIX.length), 'base64'),
  );
  const record = plain === null ? undefined : parseCaptureRecord(plain.toString('utf8'));
  // The sealed bytes name their tenant and id (associated data); the plaintext must agree.
  if (!record || record.tenant !== tenant || record.requestId !== requestId) {
    return { kind: 'sealed_elsewhere' };
  }
  return { kind: 'found', record, ttlSeconds: Number(ttl) };
}

export type OwnerResult =
  | { readonly kind: 'owner'; readonly tenant: TenantId }
  | { readonly kind: 'absent' }
  /** An owner entry whose signature does not hold: written without the secret. */
  | { readonly kind: 'forged' };

/** Which tenant `requestId` belongs to, from its signed owner entry. */
export async function findCaptureOwner(
  client: RedisClient,
  keys: Keyspace,
  keyring: CaptureKeyring,
  requestId: string,
): Promise<OwnerResult> {
  const value = await withDeadline(client, client.get(keys.captureOwner(requestId)));
  if (typeof value !== 'string') return { kind: 'absent' };
  const [name, mac, ...rest] = value.split(' ');
  if (name === undefined || mac === undefined || rest.length > 0) return { kind: 'forged' };
  let tenant: TenantId;
  try {
    tenant = parseTenantId(name);
  } catch (e) {
    if (isInvalidTenantIdError(e)) return { kind: 'forged' };
    throw e;
  }
  return keyring.checkIndexMac(tenant, requestId, mac)
    ? { kind: 'owner', tenant }
    : { kind: 'forged' };
}
