/**
 * One semantic row's sealed answer: `sc1.<key id>.<base64(iv ‖ ciphertext ‖ tag)>`, AES-256-GCM
 * under the tenant's key (crypto.ts) with the tenant, the key id, the scope and the expiry as
 * associated data, so a row planted under another tenant or scope, or with its expiry moved,
 * does not open.
 */
import { open, seal, type TenantCacheKeys } from '../crypto';
import { responseOf, responsePlaintext, type CachedResponse } from '../entry';

const ROW_FORMAT = 'sc1';

function aad(keys: TenantCacheKeys, scope: string, expiresAt: number): string {
  return [ROW_FORMAT, keys.tenantId, keys.keyId, scope, String(expiresAt)].join('|');
}

/** `sc1.<key id>.<base64(iv ‖ ciphertext ‖ tag)>` */
export function sealRow(
  keys: TenantCacheKeys,
  scope: string,
  expiresAt: number,
  response: CachedResponse,
): string {
  const sealed = seal(keys, aad(keys, scope, expiresAt), responsePlaintext(response));
  return [ROW_FORMAT, keys.keyId, sealed.toString('base64')].join('.');
}

/** The answer, `stale` (another master secret: a miss) or `forged` (an alarm, a miss). */
export function openRow(
  keys: TenantCacheKeys,
  scope: string,
  expiresAt: number,
  text: string,
): CachedResponse | 'stale' | 'forged' {
  const parts = text.split('.');
  if (parts.length !== 3 || parts[0] !== ROW_FORMAT) return 'forged';
  const [, keyId, b64] = parts as [string, string, string];
  if (keyId !== keys.keyId) return 'stale';
  const plain = open(keys, aad(keys, scope, expiresAt), Buffer.from(b64, 'base64'));
  return (plain === null ? null : responseOf(plain)) ?? 'forged';
}
