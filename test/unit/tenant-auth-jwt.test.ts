import test from 'ava';
import { createHmac, createPublicKey } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { JwtVerifier } from '../../plugins/tenant-auth/identity/jwt';
import { isGatewayError } from '../../lib/http/errors';
import { tenantAuthConfig } from '../helpers/tenant-auth-config';
import { HS_SECRET, hsKey, jwksOf, keys, noneToken, sign } from '../helpers/jwt';

const now = () => Math.floor(Date.now() / 1000);

function verifier(jwt: Partial<ReturnType<typeof tenantAuthConfig>['jwt']>) {
  const base = tenantAuthConfig().jwt;
  return new JwtVerifier({ ...base, ...jwt });
}

async function refusal(v: JwtVerifier, token: string): Promise<{ status: number; code: string }> {
  try {
    await v.verify(token);
  } catch (e) {
    if (isGatewayError(e)) return { status: e.status, code: e.code };
    throw e;
  }
  throw new Error('token was accepted');
}

test('HS256, RS256 and ES256 tokens verify and yield tenant, plan and subject', async (t) => {
  const k = keys();
  const v = verifier({
    algorithms: ['HS256', 'RS256', 'ES256'],
    hs256_secrets: [HS_SECRET],
    public_keys: [k.rsa.publicPem, k.ec.publicPem],
  });
  const claims = { tenant_id: 'acme', plan: 'pro', sub: 'user-1' };
  for (const token of [
    await sign(claims, 'HS256', hsKey()),
    await sign(claims, 'RS256', k.rsa.privateKey),
    await sign(claims, 'ES256', k.ec.privateKey),
  ]) {
    t.deepEqual(await v.verify(token), {
      source: 'jwt',
      tenantId: 'acme',
      plan: 'pro',
      subject: 'user-1',
    });
  }
});

test('alg none is refused', async (t) => {
  const v = verifier({ algorithms: ['HS256'], hs256_secrets: [HS_SECRET] });
  const r = await refusal(v, noneToken({ tenant_id: 'acme', exp: now() + 60 }));
  t.is(r.status, 401);
});

test('a token signed with another key is refused', async (t) => {
  const k = keys();
  const v = verifier({ algorithms: ['RS256'], public_keys: [k.rsa.publicPem] });
  const r = await refusal(v, await sign({ tenant_id: 'acme' }, 'RS256', k.otherRsa.privateKey));
  t.deepEqual(r, { status: 401, code: 'invalid_token' });
});

test('an algorithm not in the allow-list is refused (HS256 when only RS256 is accepted)', async (t) => {
  const k = keys();
  const v = verifier({ algorithms: ['RS256'], public_keys: [k.rsa.publicPem] });
  // Algorithm confusion: HMAC keyed with the RSA public key PEM.
  const header = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
  const body = Buffer.from(JSON.stringify({ tenant_id: 'acme', exp: now() + 60 })).toString(
    'base64url',
  );
  const sig = createHmac('sha256', k.rsa.publicPem).update(`${header}.${body}`).digest('base64url');
  t.is((await refusal(v, `${header}.${body}.${sig}`)).status, 401);
});

test('expired tokens are refused beyond the clock skew, accepted within it', async (t) => {
  const v = verifier({ algorithms: ['HS256'], hs256_secrets: [HS_SECRET], clock_skew_seconds: 30 });
  const expired = await sign({ tenant_id: 'acme', exp: now() - 120 }, 'HS256', hsKey(), {
    expiresIn: null,
  });
  t.deepEqual(await refusal(v, expired), { status: 401, code: 'token_expired' });
  const justExpired = await sign({ tenant_id: 'acme', exp: now() - 10 }, 'HS256', hsKey(), {
    expiresIn: null,
  });
  t.is((await v.verify(justExpired)).tenantId, 'acme');
});

test('tokens without exp and tokens not yet valid are refused', async (t) => {
  const v = verifier({ algorithms: ['HS256'], hs256_secrets: [HS_SECRET], clock_skew_seconds: 0 });
  t.is(
    (await refusal(v, await sign({ tenant_id: 'acme' }, 'HS256', hsKey(), { expiresIn: null })))
      .status,
    401,
  );
  t.is(
    (await refusal(v, await sign({ tenant_id: 'acme', nbf: now() + 3600 }, 'HS256', hsKey())))
      .status,
    401,
  );
});

test('issuer and audience are enforced when configured', async (t) => {
  const v = verifier({
    algorithms: ['HS256'],
    hs256_secrets: [HS_SECRET],
    issuer: 'https://idp',
    audience: 'ai-gw',
  });
  t.is(
    (
      await v.verify(
        await sign({ tenant_id: 'acme', iss: 'https://idp', aud: 'ai-gw' }, 'HS256', hsKey()),
      )
    ).tenantId,
    'acme',
  );
  t.is(
    (
      await refusal(
        v,
        await sign({ tenant_id: 'acme', iss: 'https://evil', aud: 'ai-gw' }, 'HS256', hsKey()),
      )
    ).status,
    401,
  );
  t.is(
    (
      await refusal(
        v,
        await sign({ tenant_id: 'acme', iss: 'https://idp', aud: 'other' }, 'HS256', hsKey()),
      )
    ).status,
    401,
  );
});

test('a token without the tenant claim is refused', async (t) => {
  const v = verifier({ algorithms: ['HS256'], hs256_secrets: [HS_SECRET] });
  t.deepEqual(await refusal(v, await sign({ plan: 'pro' }, 'HS256', hsKey())), {
    status: 401,
    code: 'missing_tenant_claim',
  });
  t.deepEqual(await refusal(v, await sign({ tenant_id: 42 }, 'HS256', hsKey())), {
    status: 401,
    code: 'missing_tenant_claim',
  });
});

test('garbage is refused, not thrown', async (t) => {
  const v = verifier({ algorithms: ['HS256'], hs256_secrets: [HS_SECRET] });
  for (const junk of ['x', 'a.b.c', '....', 'eyJhbGciOiJIUzI1NiJ9.e30'])
    t.is((await refusal(v, junk)).status, 401);
});

test('keys from a JWKS file are chosen by kid', async (t) => {
  const k = keys();
  const dir = mkdtempSync(path.join(tmpdir(), 'jwks-'));
  const file = path.join(dir, 'jwks.json');
  writeFileSync(
    file,
    JSON.stringify(await jwksOf(createPublicKey(k.rsa.publicPem), 'k1', 'RS256')),
  );
  const v = verifier({ algorithms: ['RS256'], jwks_file: file });
  t.is(
    (await v.verify(await sign({ tenant_id: 'acme' }, 'RS256', k.rsa.privateKey, { kid: 'k1' })))
      .tenantId,
    'acme',
  );
  t.is(
    (
      await refusal(
        v,
        await sign({ tenant_id: 'acme' }, 'RS256', k.otherRsa.privateKey, { kid: 'k1' }),
      )
    ).status,
    401,
  );
});

test('bearer extraction', (t) => {
  t.is(JwtVerifier.tokenFrom('Bearer abc'), 'abc');
  t.is(JwtVerifier.tokenFrom('bearer   abc '), 'abc');
  t.is(JwtVerifier.tokenFrom('Basic abc'), null);
  t.is(JwtVerifier.tokenFrom(undefined), null);
});

test('an unusable public key is a config error', (t) => {
  t.throws(() => verifier({ algorithms: ['RS256'], public_keys: ['not a pem'] }), {
    message: /public_keys\[1\]/,
  });
});
