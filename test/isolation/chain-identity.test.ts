/**
 * Cross-plugin isolation eval, identity: tenant B tries to be taken for tenant A by the whole
 * kong.yml chain — spoofed identity headers in every spelling, credential tricks, path and case
 * tricks — while A is seeded everywhere (see chain-fixture). B must be served as B (its own
 * upstream label, its own state) or refused, and get nothing of A's. Positive control of every
 * case: the same request with A's key does reach A's state (A's id and budget figures come back,
 * from A's drained budget), so a probe that reached A would be seen.
 */
import test from 'ava';
import { nothingOfA } from '../helpers/chain-assert';
import { sharedChainFixture, type ChainFixture, type ChainTenant } from '../helpers/chain-fixture';
import { leaks, type ProbeInit } from '../helpers/chain-probe';

const fx = sharedChainFixture(test);

type Pairs = Array<[string, string]>;
const question = (f: ChainFixture) => ({
  model: 'gpt-4o-mini',
  max_tokens: 30,
  messages: [{ role: 'user', content: 'vault memo merger codename and password' }],
  // not cached (temperature 1): every case reaches the meter and the upstream
  temperature: 1,
  user: f.B.id,
});

/** Spoofed identity headers, each sent with B's key on a chat request. */
const SPOOFS: Array<[string, (f: ChainFixture) => Pairs]> = [
  ['X-Tenant-Id', (f) => [['X-Tenant-Id', f.A.id]]],
  ['x-tenant-id, lower case', (f) => [['x-tenant-id', f.A.id]]],
  ['X-TENANT-ID, upper case', (f) => [['X-TENANT-ID', f.A.id]]],
  [
    'X-Tenant-Id twice',
    (f) => [
      ['X-Tenant-Id', f.A.id],
      ['x-tenant-id', f.A.id],
    ],
  ],
  ['X-Tenant-Id padded with spaces', (f) => [['X-Tenant-Id', `  ${f.A.id}  `]]],
  [
    'X-Tenant-Plan and X-Tenant-Id',
    (f) => [
      ['X-Tenant-Plan', 'enterprise'],
      ['X-Tenant-Id', f.A.id],
    ],
  ],
  ['X-Consumer-Custom-ID', (f) => [['X-Consumer-Custom-ID', f.A.id]]],
  ['X-Consumer-Username', (f) => [['X-Consumer-Username', `${f.A.id}-app`]]],
  ['X-Consumer-ID', (f) => [['X-Consumer-ID', f.A.id]]],
  ['X-Credential-Identifier', (f) => [['X-Credential-Identifier', f.A.id]]],
  [
    'X-Anonymous-Consumer with A’s id',
    (f) => [
      ['X-Anonymous-Consumer', 'true'],
      ['X-Consumer-Custom-ID', f.A.id],
    ],
  ],
  [
    'X-Forwarded-User and X-Authenticated-Userid',
    (f) => [
      ['X-Forwarded-User', f.A.id],
      ['X-Authenticated-Userid', f.A.id],
    ],
  ],
  [
    'X-Knowledge-Namespace and X-Retrieval-Namespace',
    (f) => [
      ['X-Knowledge-Namespace', f.A.id],
      ['X-Retrieval-Namespace', f.A.id],
    ],
  ],
  [
    'X-Circuit-Breaker-Fallback naming A’s backup',
    () => [['X-Circuit-Breaker-Fallback', 'a-backup']],
  ],
  ['Host of A’s dedicated upstream', (f) => [['Host', `127.0.0.1:${f.upstreams.dedicated.port}`]]],
  [
    'X-Budget-State and X-Cache-Status',
    () => [
      ['X-Budget-State', 'ok'],
      ['X-Cache-Status', 'HIT'],
    ],
  ],
  [
    'X-Kong-Request-Id and X-Request-Id',
    () => [
      ['X-Kong-Request-Id', 'f'.repeat(32)],
      ['X-Request-Id', 'same-id'],
    ],
  ],
  ['Forwarded naming A', (f) => [['Forwarded', `for=127.0.0.1;by=${f.A.id}`]]],
];

for (const [name, headers] of SPOOFS) {
  test(`spoofed identity header: ${name}`, async (t) => {
    const f = fx();
    const init = (): ProbeInit => ({ body: question(f), headers: headers(f) });
    const p = await f.as(f.B, '/v1/chat/completions', init());
    t.is(p.res.status, 200, p.res.text.slice(0, 200));
    t.is(p.upstream.length, 1, 'proxied once, for B');
    nothingOfA(t, f, p);
    // Control: the same request with A's key reaches A's state.
    const a = await f.as(f.A, '/v1/chat/completions', init());
    t.true(leaks(a, f.secrets).length > 0, 'A’s own request surfaces A’s state');
  });
}

test('spoofed identity header: X_Tenant_Id (underscore) is refused, never read', async (t) => {
  const f = fx();
  const p = await f.as(f.B, '/v1/chat/completions', {
    body: question(f),
    headers: [['X_Tenant_Id', f.A.id]],
  });
  t.is(p.res.status, 400);
  t.is((p.res.json as { error: { code: string } }).error.code, 'reserved_header');
  nothingOfA(t, f, p);
  const a = await f.as(f.A, '/v1/chat/completions', { body: question(f) });
  t.true(leaks(a, f.secrets).length > 0);
});

/** Credential tricks: who sends what, and the status expected. */
const CREDENTIALS: Array<[string, (f: ChainFixture) => [ChainTenant | null, Pairs], number]> = [
  ['no key, X-Tenant-Id of A', (f) => [null, [['X-Tenant-Id', f.A.id]]], 401],
  ['A’s tenant id as the key', (f) => [null, [['apikey', f.A.id]]], 401],
  ['A’s consumer name as the key', (f) => [null, [['x-api-key', `${f.A.id}-app`]]], 401],
  ['B’s key in upper case', (f) => [null, [['apikey', f.B.key.toUpperCase()]]], 401],
  ['A’s tenant id as a Bearer token', (f) => [null, [['Authorization', `Bearer ${f.A.id}`]]], 401],
  ['B’s key and A’s key (x-api-key)', (f) => [f.B, [['x-api-key', f.A.key]]], 401],
  ['B’s key and A’s key (Bearer)', (f) => [f.B, [['Authorization', `Bearer ${f.A.key}`]]], 401],
  [
    'B’s key and an unsigned JWT claiming A',
    (f) => {
      const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const jwt = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ tenant_id: f.A.id, plan: 'pro', exp: 4e9 })}.`;
      return [f.B, [['Authorization', `Bearer ${jwt}`]]];
    },
    200,
  ],
];

for (const [name, make, status] of CREDENTIALS) {
  test(`credential trick: ${name}`, async (t) => {
    const f = fx();
    const [who, headers] = make(f);
    const p = await f.as(who, '/v1/chat/completions', { body: question(f), headers });
    t.is(p.res.status, status, p.res.text.slice(0, 200));
    nothingOfA(t, f, p);
    if (status !== 200) t.is(p.upstream.length, 0, 'nothing proxied');
    const a = await f.as(f.A, '/v1/chat/completions', { body: question(f) });
    t.true(leaks(a, f.secrets).length > 0, 'A’s own key reaches A’s state');
  });
}

/** Path and case tricks: B's key, a request A's data sits behind on the canonical path. */
const PATHS: Array<[string, string, string]> = [
  ['POST', '/V1/chat/completions', 'upper-case prefix'],
  ['POST', '/v1/CHAT/COMPLETIONS', 'upper-case path'],
  ['POST', '/v1//chat/completions', 'double slash'],
  ['POST', '/v1/chat/completions/', 'trailing slash'],
  ['POST', '/v1/./chat/completions', 'dot segment'],
  ['POST', '/v1/chat/%63ompletions', 'percent-encoded letter'],
  ['POST', '/v1/chat/completions?tenant=@A&tenant_id=@A', 'A’s id in the query'],
  ['POST', '/v1/chat/completions;tenant=@A', 'A’s id as a matrix parameter'],
  ['POST', '/v1/@A/chat/completions', 'A’s id as a path segment'],
  ['GET', '/v1/Models', 'models, mixed case'],
  ['GET', '/v1/models/../models', 'models with a dot-dot segment'],
  ['GET', '/v1/models/%67pt-4.1', 'A’s model, percent-encoded'],
];

for (const [method, raw, name] of PATHS) {
  test(`path trick: ${method} ${name}`, async (t) => {
    const f = fx();
    const path = raw.replaceAll('@A', f.A.id);
    const init: ProbeInit = method === 'POST' ? { body: question(f) } : { method };
    const p = await f.as(f.B, path, init);
    nothingOfA(t, f, p);
    if (method === 'GET' && p.res.status === 200) t.false(p.res.text.includes(`"${f.m.model}"`));
    // Control: the canonical request as A reaches A's state (A's budget on POST, A's tier on GET).
    const a = await f.as(f.A, method === 'POST' ? '/v1/chat/completions' : '/v1/models', init);
    if (method === 'POST') t.true(leaks(a, f.secrets).length > 0);
    else t.true(a.res.text.includes(`"${f.m.model}"`));
  });
}
