/**
 * The sealing both per-tenant stores use (the cache's entries, the captured requests): a key
 * derived per purpose by HKDF-SHA256 from an operator secret, and AES-256-GCM with associated
 * data, laid out as iv ‖ ciphertext ‖ tag. Written once, so a rule about nonces, tag length or
 * what a failed open returns is the same everywhere. (The knowledge chunks have their own
 * layout, lib/retrieval/chunk-cipher.ts.)
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** A 32-byte key for `info`, derived from `master` under the store's own `salt`. */
export function deriveKey(master: Buffer, salt: string, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', master, salt, info, 32));
}

/** AES-256-GCM under `key`, bound to `aad`: iv ‖ ciphertext ‖ tag (a fresh random iv). */
export function sealAead(key: Buffer, aad: string, plaintext: Buffer): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([iv, body, cipher.getAuthTag()]);
}

/** The plaintext, or null when `sealed` was not sealed under `key` for this `aad`. */
export function openAead(key: Buffer, aad: string, sealed: Buffer): Buffer | null {
  if (sealed.length < IV_BYTES + TAG_BYTES) return null;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, IV_BYTES));
    decipher.setAAD(Buffer.from(aad, 'utf8'));
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    return Buffer.concat([
      decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES)),
      decipher.final(),
    ]);
  } catch {
    return null;
  }
}
