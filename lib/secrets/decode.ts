/**
 * Operator secrets (the cache's master secret, the capture secret): one text, hex or base64,
 * at least 32 bytes once decoded. One decoder for every secret of the chain, so a rule about
 * what a secret must be is written once. Errors name the secret, never echo it.
 */

/** Bytes a secret must hold at least: 256 bits for HKDF-SHA-256 keys derived from it. */
export const MIN_SECRET_BYTES = 32;

/**
 * Decodes `text` (surrounding whitespace ignored): hex when it is an even run of hex digits,
 * else base64. Throws `makeError(message)` when it holds fewer than MIN_SECRET_BYTES bytes.
 */
export function decodeSecret(
  text: string,
  what: string,
  makeError: (message: string) => Error = (m) => new Error(m),
): Buffer {
  const s = text.trim();
  const bytes = /^(?:[0-9a-fA-F]{2})+$/.test(s) ? Buffer.from(s, 'hex') : Buffer.from(s, 'base64');
  if (bytes.length < MIN_SECRET_BYTES) {
    throw makeError(`the ${what} must hold at least ${MIN_SECRET_BYTES} bytes (hex or base64)`);
  }
  return bytes;
}
