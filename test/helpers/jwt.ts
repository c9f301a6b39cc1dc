/** Test keys and tokens for JWT cases (real signatures made with jose). */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { SignJWT, exportJWK, type JWTPayload } from 'jose';

export const HS_SECRET = 'an-hs256-secret-of-at-least-32-bytes!!';

export interface KeySet {
  rsa: { privateKey: KeyObject; publicPem: string };
  ec: { privateKey: KeyObject; publicPem: string };
  otherRsa: { privateKey: KeyObject; publicPem: string };
}

function pair(type: 'rsa' | 'ec') {
  const kp =
    type === 'rsa'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    privateKey: kp.privateKey,
    publicPem: kp.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

let cached: KeySet | null = null;
export function keys(): KeySet {
  cached ??= { rsa: pair('rsa'), ec: pair('ec'), otherRsa: pair('rsa') };
  return cached;
}

export async function sign(
  payload: JWTPayload,
  alg: 'HS256' | 'RS256' | 'ES256',
  key: KeyObject | Uint8Array,
  opts: { expiresIn?: string | number | null; kid?: string } = {},
): Promise<string> {
  let jwt = new SignJWT(payload)
    .setProtectedHeader({ alg, ...(opts.kid ? { kid: opts.kid } : {}) })
    .setIssuedAt();
  if (opts.expiresIn !== null) jwt = jwt.setExpirationTime(opts.expiresIn ?? '5m');
  return jwt.sign(key);
}

export const hsKey = (secret = HS_SECRET) => new TextEncoder().encode(secret);

/** An unsigned token: header {"alg":"none"}. */
export function noneToken(payload: JWTPayload): string {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(payload)}.`;
}

export async function jwksOf(pub: KeyObject, kid: string, alg: string) {
  return { keys: [{ ...(await exportJWK(pub)), kid, alg, use: 'sig' }] };
}
