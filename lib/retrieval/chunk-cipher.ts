/**
 * Per-tenant encryption of chunk text at rest: the third lock of retrieval, after the
 * partition-key filter and the assembly assertion. Each tenant (knowledge namespace) has its
 * own AES-256-GCM key, derived with HKDF-SHA256 from one operator secret; the tenant id is
 * also the associated data. A chunk that reaches the wrong tenant therefore fails
 * authentication instead of decrypting: it cannot be read, not even by mistake.
 *
 * Sealed format (ASCII, fits a Milvus VarChar): `v1.<iv>.<tag>.<ciphertext>`, base64url parts.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { TenantId } from '../tenant/tenant-id';

const VERSION = 'v1';
const HKDF_SALT = Buffer.from('kta/retrieval/chunk-key/v1', 'utf8');
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Shortest operator secret accepted: 32 bytes, as for HS256 secrets. */
export const MIN_SECRET_BYTES = 32;

/** A sealed chunk failed to open: wrong tenant, wrong secret, or tampered bytes. */
export class ChunkIntegrityError extends Error {
  override readonly name = 'ChunkIntegrityError';
}

export function isChunkIntegrityError(e: unknown): e is ChunkIntegrityError {
  return e instanceof ChunkIntegrityError;
}

export class KnowledgeSecretError extends Error {
  override readonly name = 'KnowledgeSecretError';
}

/** Where the operator secret comes from: a file (preferred) or an environment variable. */
export interface SecretSource {
  readonly file?: string | null;
  readonly env?: string | null;
}

/** Reads the operator secret; throws KnowledgeSecretError (never echoing it) when unusable. */
export function loadKnowledgeSecret(
  source: SecretSource,
  environment: NodeJS.ProcessEnv = process.env,
): Buffer {
  let secret: Buffer | undefined;
  let where = '';
  if (source.file) {
    where = `file ${source.file}`;
    try {
      secret = Buffer.from(readFileSync(source.file, 'utf8').trim(), 'utf8');
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      throw new KnowledgeSecretError(`knowledge secret ${where} unreadable: ${reason}`);
    }
  } else if (source.env) {
    where = `environment variable ${source.env}`;
    const v = environment[source.env];
    if (v !== undefined) secret = Buffer.from(v.trim(), 'utf8');
  }
  if (!secret)
    throw new KnowledgeSecretError(`no knowledge secret (${where || 'none configured'})`);
  if (secret.length < MIN_SECRET_BYTES) {
    throw new KnowledgeSecretError(
      `knowledge secret from ${where} is shorter than ${MIN_SECRET_BYTES} bytes`,
    );
  }
  return secret;
}

/** Seals and opens chunk text for one tenant at a time; keys are derived once and kept. */
export class ChunkCipher {
  private readonly keys = new Map<string, Buffer>();
  /** Derived keys kept per process; beyond this many tenants the map starts over. */
  private static readonly MAX_KEYS = 10_000;

  constructor(private readonly secret: Buffer) {
    if (secret.length < MIN_SECRET_BYTES) {
      throw new KnowledgeSecretError(`knowledge secret shorter than ${MIN_SECRET_BYTES} bytes`);
    }
  }

  private key(tenant: TenantId): Buffer {
    let k = this.keys.get(tenant);
    if (!k) {
      if (this.keys.size >= ChunkCipher.MAX_KEYS) this.keys.clear();
      k = Buffer.from(hkdfSync('sha256', this.secret, HKDF_SALT, `tenant:${tenant}`, 32));
      this.keys.set(tenant, k);
    }
    return k;
  }

  seal(tenant: TenantId, plaintext: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.key(tenant), iv, {
      authTagLength: TAG_BYTES,
    });
    cipher.setAAD(Buffer.from(tenant, 'utf8'));
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const tag = cipher.getAuthTag();
    return [VERSION, iv, tag, ct]
      .map((p) => (typeof p === 'string' ? p : p.toString('base64url')))
      .join('.');
  }

  /**
   * An opaque, per-tenant digest of a document's source name (HMAC under the tenant's key),
   * stored beside its chunks so a re-ingested document replaces them without the source name
   * itself being stored in the clear.
   */
  sourceDigest(tenant: TenantId, source: string): string {
    return createHmac('sha256', this.key(tenant)).update(`source:${source}`, 'utf8').digest('hex');
  }

  /** Opens a sealed chunk of `tenant`; throws ChunkIntegrityError if it is not one. */
  open(tenant: TenantId, sealed: string): string {
    const parts = sealed.split('.');
    if (parts.length !== 4 || parts[0] !== VERSION) {
      throw new ChunkIntegrityError('chunk text is not a sealed v1 chunk');
    }
    const iv = Buffer.from(parts[1] ?? '', 'base64url');
    const tag = Buffer.from(parts[2] ?? '', 'base64url');
    const ct = Buffer.from(parts[3] ?? '', 'base64url');
    if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) {
      throw new ChunkIntegrityError('sealed chunk has a malformed iv or tag');
    }
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key(tenant), iv, {
        authTagLength: TAG_BYTES,
      });
      decipher.setAAD(Buffer.from(tenant, 'utf8'));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(ct), decipher.final()]).toString('utf8');
    } catch {
      throw new ChunkIntegrityError(`sealed chunk does not open for tenant ${tenant}`);
    }
  }
}

/** Bytes a sealed chunk of `plaintextBytes` takes (for the VarChar bound). */
export function sealedLength(plaintextBytes: number): number {
  const b64 = (n: number): number => Math.ceil((n * 4) / 3);
  return VERSION.length + 3 + b64(IV_BYTES) + b64(TAG_BYTES) + b64(plaintextBytes);
}
