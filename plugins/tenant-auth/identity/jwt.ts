/**
 * Identity from a JWT this plugin verifies itself, with `jose` (maintained, audited, no
 * hand-written crypto). Accepted algorithms are an allow-list from config, so `alg: none`
 * and algorithm-confusion tokens (an HS256 token signed with an RSA public key as secret)
 * are refused by construction: each key is bound to the algorithm family it belongs to.
 */
import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  createLocalJWKSet,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
} from 'jose';
import { GatewayError } from '../../../lib/http/errors';
import type { HeaderMap } from '../../../lib/pdk/kong';
import type { JwtAlgorithm, TenantAuthConfig } from '../config';
import type { VerifiedIdentity } from './types';

type JwtConfig = TenantAuthConfig['jwt'];

/** As TenantContext allows (lib/tenant/context.ts). */
const MAX_SUBJECT_LENGTH = 256;

interface CandidateKey {
  alg: JwtAlgorithm;
  key: KeyObject;
}

function invalidToken(message: string, code = 'invalid_token'): GatewayError {
  return new GatewayError({
    status: 401,
    type: 'authentication_error',
    code,
    message,
    headers: { 'WWW-Authenticate': `Bearer error="invalid_token"` },
  });
}

function invalidRequest(message: string): GatewayError {
  return new GatewayError({
    status: 401,
    type: 'authentication_error',
    code: 'invalid_token',
    message,
    headers: { 'WWW-Authenticate': 'Bearer error="invalid_request"' },
  });
}

/** Prepares keys once per plugin instance; throws on a key that cannot be used. */
export class JwtVerifier {
  private readonly keys: CandidateKey[] = [];
  private readonly jwks: JWTVerifyGetKey | null;
  private readonly options: JWTVerifyOptions;

  constructor(private readonly cfg: JwtConfig) {
    const algs = new Set(cfg.algorithms);
    if (algs.has('HS256')) {
      for (const secret of cfg.hs256_secrets) {
        this.keys.push({ alg: 'HS256', key: createSecretKey(Buffer.from(secret, 'utf8')) });
      }
    }
    cfg.public_keys.forEach((pem, i) => {
      let key: KeyObject;
      try {
        key = createPublicKey(pem);
      } catch (e) {
        throw new Error(
          `jwt.public_keys[${i + 1}]: not a PEM public key (${(e as Error).message})`,
        );
      }
      const alg: JwtAlgorithm | null =
        key.asymmetricKeyType === 'rsa'
          ? 'RS256'
          : key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1'
            ? 'ES256'
            : null;
      if (!alg)
        throw new Error(`jwt.public_keys[${i + 1}]: only RSA and P-256 EC keys are supported`);
      if (algs.has(alg)) this.keys.push({ alg, key });
    });
    this.jwks = cfg.jwks_file
      ? createLocalJWKSet(
          JSON.parse(readFileSync(cfg.jwks_file, 'utf8')) as Parameters<
            typeof createLocalJWKSet
          >[0],
        )
      : null;
    this.options = {
      algorithms: [...algs],
      clockTolerance: cfg.clock_skew_seconds,
      requiredClaims: ['exp'],
      ...(cfg.issuer ? { issuer: cfg.issuer } : {}),
      ...(cfg.audience ? { audience: cfg.audience } : {}),
    };
  }

  /**
   * The request's bearer token, or null when it carries none. Two token headers are refused
   * (which one would an upstream read?), and so is a header that is not `Bearer <token>`
   * unless `otherSchemes` (another credential may use the header).
   */
  tokenFromHeaders(headers: HeaderMap, otherSchemes: boolean): string | null {
    const name = this.cfg.header_name;
    const values = Object.prototype.hasOwnProperty.call(headers, name.toLowerCase())
      ? (headers[name.toLowerCase()] ?? [])
      : [];
    if (values.length > 1) throw invalidRequest(`more than one ${name} header`);
    const raw = values[0];
    const token = JwtVerifier.tokenFrom(raw);
    if (raw !== undefined && token === null && !otherSchemes) {
      throw invalidRequest(`the ${name} header must be 'Bearer <token>'`);
    }
    return token;
  }

  /** The bearer token from the configured header, or null when the header is absent. */
  static tokenFrom(headerValue: string | undefined): string | null {
    if (headerValue === undefined) return null;
    const m = /^\s*bearer\s+(\S+)\s*$/i.exec(headerValue);
    return m ? (m[1] ?? null) : null;
  }

  async verify(token: string): Promise<VerifiedIdentity> {
    const payload = await this.verifySignatureAndClaims(token);
    const maxLifetime = this.cfg.max_lifetime_seconds;
    if (maxLifetime !== null && typeof payload.exp === 'number') {
      if (payload.exp - Date.now() / 1000 > maxLifetime + this.cfg.clock_skew_seconds) {
        throw invalidToken(`token lives longer than ${maxLifetime} s`, 'token_lifetime_too_long');
      }
    }
    if (typeof payload.sub === 'string' && payload.sub.length > MAX_SUBJECT_LENGTH) {
      throw invalidToken(`token subject is longer than ${MAX_SUBJECT_LENGTH} characters`);
    }
    const tenant = payload[this.cfg.tenant_claim];
    if (typeof tenant !== 'string' || tenant.length === 0) {
      throw invalidToken(`token has no '${this.cfg.tenant_claim}' claim`, 'missing_tenant_claim');
    }
    const plan = payload[this.cfg.plan_claim];
    return {
      source: 'jwt',
      tenantId: tenant,
      plan: typeof plan === 'string' && plan.length > 0 ? plan : null,
      subject: typeof payload.sub === 'string' && payload.sub ? payload.sub : `tenant:${tenant}`,
    };
  }

  private async verifySignatureAndClaims(token: string): Promise<JWTPayload> {
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      throw invalidToken('token is not a well-formed JWT');
    }
    if (typeof alg !== 'string' || !(this.options.algorithms ?? []).includes(alg)) {
      throw invalidToken(`token algorithm '${String(alg)}' is not accepted`);
    }
    const candidates = this.keys.filter((k) => k.alg === alg);
    try {
      if (this.jwks && candidates.length === 0) {
        return (await jwtVerify(token, this.jwks, this.options)).payload;
      }
      let lastSignatureError: unknown = null;
      for (const { key } of candidates) {
        try {
          return (await jwtVerify(token, key, this.options)).payload;
        } catch (e) {
          if (!(e instanceof joseErrors.JWSSignatureVerificationFailed)) throw e;
          lastSignatureError = e;
        }
      }
      if (this.jwks) return (await jwtVerify(token, this.jwks, this.options)).payload;
      throw lastSignatureError ?? invalidToken('no key configured for this token');
    } catch (e) {
      throw mapJoseError(e);
    }
  }
}

function mapJoseError(e: unknown): unknown {
  if (e instanceof GatewayError) return e;
  if (e instanceof joseErrors.JWTExpired) return invalidToken('token has expired', 'token_expired');
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    return invalidToken(`token claim '${e.claim}' is not valid: ${e.reason}`);
  }
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) {
    return invalidToken('token signature does not verify');
  }
  if (e instanceof joseErrors.JOSEError) return invalidToken(`token refused: ${e.code}`);
  return e;
}
