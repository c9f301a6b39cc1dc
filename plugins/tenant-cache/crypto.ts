/**
 * Per-tenant encryption of cached bodies, and the per-tenant key that names entries.
 *
 * The operator supplies one master secret outside kong.yml (an environment variable of the
 * plugin server, or a file). From it, HKDF-SHA256 derives for each tenant:
 * - an AES-256-GCM key that seals the entry (associated data: tenant, key id, the entry's
 *   Redis key and the generations it was written under — see entry.ts), and
 * - an HMAC-SHA256 key that names the entry (cache-key.ts), so identical requests of two
 *   tenants have unrelated names, and nobody reading Redis can test "did acme ask X?".
 *
 * A value moved under another tenant's key, or another entry's key, fails GCM authentication.
 * The key id is a fingerprint of the master secret: rotating the secret changes every name
 * and id, so old entries are simply never found again and expire by their TTL.
 */
import { createHash, randomBytes, type Hmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { TenantContext } from '../../lib/tenant/context';
import type { TenantId } from '../../lib/tenant/tenant-id';
import { deriveKey, openAead, sealAead } from '../../lib/secrets/aead';
import { MIN_SECRET_BYTES, decodeSecret as decodeLibSecret } from '../../lib/secrets/decode';

const HKDF_SALT = 'kta/tenant-cache/v1';
export { MIN_SECRET_BYTES };
/** Derived keys kept per process; beyond it the map starts over (a derivation is ~10 µs). */
const MAX_DERIVED = 10_000;

export interface TenantCacheKeys {
  readonly tenantId: TenantId;
  readonly keyId: string;
  readonly sealKey: Buffer;
  readonly nameKey: Buffer;
}

/** Decodes a secret written as 64+ hex characters or as base64 (32+ bytes either way). */
export function decodeSecret(text: string): Buffer {
  return decodeLibSecret(text, 'master secret');
}

export type SecretSource = 'env' | 'file' | 'ephemeral';

/** Where the secret comes from: the environment variable first, then the file. */
export function loadMasterSecret(opts: { env: string; file: string | null; ephemeral: boolean }): {
  secret: Buffer;
  source: SecretSource;
} {
  const fromEnv = process.env[opts.env];
  if (fromEnv !== undefined && fromEnv.trim() !== '') {
    return { secret: decodeSecret(fromEnv), source: 'env' };
  }
  if (opts.file !== null) {
    return { secret: decodeSecret(readFileSync(opts.file, 'utf8')), source: 'file' };
  }
  if (opts.ephemeral) return { secret: ephemeralSecret(), source: 'ephemeral' };
  throw new Error(`no master secret: set ${opts.env} or master_key_file`);
}

let ephemeral: Buffer | undefined;
function ephemeralSecret(): Buffer {
  ephemeral ??= randomBytes(32);
  return ephemeral;
}

function derive(master: Buffer, info: string): Buffer {
  return deriveKey(master, HKDF_SALT, info);
}

/** The master secret and the per-tenant keys derived from it. */
export class CacheKeyring {
  readonly keyId: string;
  private readonly derived = new Map<string, TenantCacheKeys>();

  constructor(private readonly master: Buffer) {
    if (master.length < MIN_SECRET_BYTES) throw new Error('master secret too short');
    this.keyId = createHash('sha256').update(derive(master, 'key-id')).digest('hex').slice(0, 12);
  }

  /** The tenant's keys; only a TenantContext (or a TenantId) opens them. */
  forTenant(tenant: TenantContext | TenantId): TenantCacheKeys {
    const tenantId = typeof tenant === 'string' ? tenant : tenant.tenantId;
    const hit = this.derived.get(tenantId);
    if (hit) return hit;
    if (this.derived.size >= MAX_DERIVED) this.derived.clear();
    const keys: TenantCacheKeys = Object.freeze({
      tenantId,
      keyId: this.keyId,
      sealKey: derive(this.master, `seal|${tenantId}`),
      nameKey: derive(this.master, `name|${tenantId}`),
    });
    this.derived.set(tenantId, keys);
    return keys;
  }
}

/** AES-256-GCM under the tenant's seal key (lib/secrets/aead.ts): iv ‖ ciphertext ‖ tag. */
export function seal(keys: TenantCacheKeys, aad: string, plaintext: Buffer): Buffer {
  return sealAead(keys.sealKey, aad, plaintext);
}

/** The plaintext, or null when the value was not sealed by these keys for this `aad`. */
export function open(keys: TenantCacheKeys, aad: string, sealed: Buffer): Buffer | null {
  return openAead(keys.sealKey, aad, sealed);
}

/**
 * Adds one field to an HMAC, length-prefixed (4 bytes, big-endian): fields can never run into
 * each other ("ab" + "c" and "a" + "bc" hash apart). The framing of every tenant-scoped digest
 * of the cache (the exact key and the semantic scope): one primitive, written once.
 */
export function field(h: Hmac, value: string): void {
  const bytes = Buffer.from(value, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(bytes.length);
  h.update(len).update(bytes);
}
