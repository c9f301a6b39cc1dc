/**
 * Per-tenant encryption of captured requests.
 *
 * One operator secret (32+ bytes, hex or base64; an environment variable of the plugin server
 * and of the operator running `npm run replay`, or a file), the same shape as tenant-cache's
 * master secret. HKDF-SHA256 derives from it, under a salt of its own (so the same secret may
 * serve both without any key in common):
 * - for each tenant, an AES-256-GCM key that seals the tenant's records; the associated data
 *   binds the record to its tenant and request id, so a record moved under another tenant's
 *   key or another request id fails authentication instead of opening;
 * - one HMAC-SHA256 key that signs the request-id index (which tenant a request id belongs
 *   to), so an index entry written by anyone without the secret is refused.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { TenantId } from '../tenant/tenant-id';
import { deriveKey, openAead, sealAead } from '../secrets/aead';
import { MIN_SECRET_BYTES, decodeSecret } from '../secrets/decode';

const HKDF_SALT = 'kta/capture/v1';
export { MIN_SECRET_BYTES };
/** Derived keys kept per process; beyond it the map starts over (a derivation is ~10 µs). */
const MAX_DERIVED = 10_000;

export class CaptureSecretError extends Error {
  override readonly name = 'CaptureSecretError';
}

/** Decodes a secret written as 64+ hex characters or as base64 (32+ bytes either way). */
export function decodeCaptureSecret(text: string): Buffer {
  return decodeSecret(text, 'capture secret', (m) => new CaptureSecretError(m));
}

/** The secret from the environment variable, else the file; throws (never echoing it). */
export function loadCaptureSecret(
  source: { env: string; file: string | null },
  environment: NodeJS.ProcessEnv = process.env,
): Buffer {
  const fromEnv = environment[source.env];
  if (fromEnv !== undefined && fromEnv.trim() !== '') return decodeCaptureSecret(fromEnv);
  if (source.file !== null) {
    let text: string;
    try {
      text = readFileSync(source.file, 'utf8');
    } catch (e) {
      throw new CaptureSecretError(
        `capture secret file ${source.file} unreadable: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
    return decodeCaptureSecret(text);
  }
  throw new CaptureSecretError(`no capture secret: set ${source.env} or capture.secret_file`);
}

function derive(master: Buffer, info: string): Buffer {
  return deriveKey(master, HKDF_SALT, info);
}

export class CaptureKeyring {
  /** A fingerprint of the secret: records sealed under another secret are told apart. */
  readonly keyId: string;
  private readonly indexKey: Buffer;
  private readonly derived = new Map<string, Buffer>();

  constructor(private readonly master: Buffer) {
    if (master.length < MIN_SECRET_BYTES) throw new CaptureSecretError('capture secret too short');
    this.keyId = createHash('sha256').update(derive(master, 'key-id')).digest('hex').slice(0, 12);
    this.indexKey = derive(master, 'index');
  }

  /** The tenant's sealing key; only a validated TenantId opens it. */
  sealKey(tenant: TenantId): Buffer {
    const hit = this.derived.get(tenant);
    if (hit) return hit;
    if (this.derived.size >= MAX_DERIVED) this.derived.clear();
    const key = derive(this.master, `seal|${tenant}`);
    this.derived.set(tenant, key);
    return key;
  }

  /** The signature of "request `requestId` belongs to `tenant`" (the index entry). */
  indexMac(tenant: TenantId, requestId: string): string {
    return createHmac('sha256', this.indexKey)
      .update(`${this.keyId}|${tenant}|${requestId}`)
      .digest('hex');
  }

  checkIndexMac(tenant: TenantId, requestId: string, mac: string): boolean {
    const want = Buffer.from(this.indexMac(tenant, requestId), 'hex');
    const got = /^[0-9a-f]{64}$/.test(mac) ? Buffer.from(mac, 'hex') : Buffer.alloc(0);
    return got.length === want.length && timingSafeEqual(got, want);
  }
}

/** Associated data: the record opens only for its tenant, its request id and this secret. */
function aad(keyring: CaptureKeyring, tenant: TenantId, requestId: string): string {
  return `kta-capture|v1|${keyring.keyId}|${tenant}|${requestId}`;
}

/** AES-256-GCM under the tenant's key (lib/secrets/aead.ts): iv ‖ ciphertext ‖ tag. */
export function sealCapture(
  keyring: CaptureKeyring,
  tenant: TenantId,
  requestId: string,
  plaintext: Buffer,
): Buffer {
  return sealAead(keyring.sealKey(tenant), aad(keyring, tenant, requestId), plaintext);
}

/** The plaintext, or null when the value was not sealed for this tenant and request id. */
export function openCapture(
  keyring: CaptureKeyring,
  tenant: TenantId,
  requestId: string,
  sealed: Buffer,
): Buffer | null {
  return openAead(keyring.sealKey(tenant), aad(keyring, tenant, requestId), sealed);
}
