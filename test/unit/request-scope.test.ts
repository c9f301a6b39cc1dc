/**
 * The request scope (lib/request/scope.ts, lib/tenant/read.ts): what one request's plugins keep
 * in the plugin-server process. Keyed so that no request can read another's facts, and nothing
 * held forever: bound to its carrier string, ended by its holders, by idleness and by TTL,
 * bounded in entries and body bytes. Serial: the store is one per process, and a sweep here
 * would end another test's scopes.
 */
import test from 'ava';
import {
  adoptScope,
  findScope,
  openScope,
  privateScope,
  scopeStats,
} from '../../lib/request/scope';
import { MAX_SCOPE_BODY_BYTES, SCOPE_IDLE_MS, SCOPE_TTL_MS } from '../../lib/request/scope-store';
import type { KongPdk } from '../../lib/pdk/kong';
import { GatewayError } from '../../lib/http/errors';
import {
  createTenantContext,
  encodeTenantContext,
  TENANT_CONTEXT_KEY,
} from '../../lib/tenant/context';
import { readRequest } from '../../lib/tenant/read';

function tenant(id: string) {
  return createTenantContext({
    tenantId: id,
    plan: 'pro',
    source: 'consumer',
    subject: `${id}-consumer`,
    policy: {
      toolsAllowed: ['*'],
      preferredModel: null,
      fallbackModel: null,
      persona: null,
      knowledgeNamespace: id,
      weight: 1,
    },
  });
}

/** A PDK whose ctx.shared holds `shared` and whose body read is counted. */
function kongWith(shared: Record<string, unknown>, body = '{"a":1}') {
  const calls: string[] = [];
  const kong = {
    ctx: {
      shared: {
        get: async (k: string) => {
          calls.push(`get ${k}`);
          return shared[k];
        },
        set: async () => undefined,
      },
    },
    request: {
      getRawBody: async () => {
        calls.push('body');
        return Buffer.from(body);
      },
      getMethod: async () => {
        calls.push('method');
        return 'POST';
      },
    },
    service: { request: { setRawBody: async () => calls.push('setRawBody') } },
    log: { err: async () => undefined },
  } as unknown as KongPdk;
  return { kong, calls };
}

test.serial(
  'a later plugin finds the scope tenant-auth opened, with the decoded context, in one call',
  async (t) => {
    const scope = openScope();
    const ctx = tenant('acme');
    const carrier = encodeTenantContext(ctx, scope.key);
    scope.bindCarrier(carrier, ctx);
    const { kong, calls } = kongWith({ [TENANT_CONTEXT_KEY]: carrier });
    const got = await readRequest(kong, 'probe');
    t.is(got.scope, scope);
    t.is(got.tenant, ctx, 'decoded once: the very object');
    t.deepEqual(calls, [`get ${TENANT_CONTEXT_KEY}`]);
  },
);

test.serial(
  "isolation: a carrier naming another request's key never gets that request's scope or facts",
  async (t) => {
    const a = openScope();
    const ctxA = tenant('acme');
    a.bindCarrier(encodeTenantContext(ctxA, a.key), ctxA);
    a.rememberBody(Buffer.from('{"secret":"of acme"}'));
    // B's carrier names A's key (which no client can write into kong.ctx.shared; a defect would).
    const ctxB = tenant('globex');
    const forged = encodeTenantContext(ctxB, a.key);
    const { kong } = kongWith({ [TENANT_CONTEXT_KEY]: forged }, '{"mine":"globex"}');
    const got = await readRequest(kong, 'probe');
    t.not(got.scope, a);
    t.is(String(got.tenant.tenantId), 'globex');
    t.deepEqual(await got.scope.jsonBody(kong), { mine: 'globex' }, 'its own body, read from Kong');
    // Positive control: A's own carrier (the same string) does reach A's scope and facts.
    const own = kongWith({ [TENANT_CONTEXT_KEY]: encodeTenantContext(ctxA, a.key) });
    const mine = await readRequest(own.kong, 'probe');
    t.is(mine.scope, a);
    t.deepEqual(await mine.scope.jsonBody(own.kong), { secret: 'of acme' });
    t.false(own.calls.includes('body'), 'from the scope, not from Kong');
  },
);

test.serial(
  'no context: a 500 refusal (fail closed), whatever the scope store holds',
  async (t) => {
    openScope();
    const { kong } = kongWith({});
    const e = await t.throwsAsync(readRequest(kong, 'probe'));
    t.true(e instanceof GatewayError);
    t.is((e as GatewayError).spec.code, 'tenant_context_missing');
  },
);

test.serial('a carrier without a key gets a private scope no later phase can find', async (t) => {
  const ctx = tenant('acme');
  const { kong } = kongWith({ [TENANT_CONTEXT_KEY]: encodeTenantContext(ctx) });
  const got = await readRequest(kong, 'probe');
  t.false(got.scope.findable);
  t.is(findScope(got.scope.key), undefined);
});

test.serial(
  "a body nested past the JSON depth limit is no JSON to the chain's plugins",
  async (t) => {
    const deep = `{"messages":${'['.repeat(5000)}${']'.repeat(5000)}}`;
    const { kong } = kongWith({}, deep);
    t.is(await privateScope().jsonBody(kong), undefined);
    const { kong: fine } = kongWith({}, '{"messages":[[[]]]}');
    t.deepEqual(await privateScope().jsonBody(fine), { messages: [[[]]] });
  },
);

test.serial(
  "tenant-auth's parse is the chain's: the object it hands over is what later plugins read",
  async (t) => {
    const { kong, calls } = kongWith({}, '{"a":1}');
    const scope = privateScope();
    const bytes = Buffer.from('{"a":1}');
    scope.rememberBody(bytes);
    const parsed = { a: 1 };
    scope.rememberJson(bytes, parsed);
    t.is(await scope.jsonBody(kong), parsed, 'the very object, not a second parse');
    // A rewrite sent with the object it was made from: that object, for the new bytes.
    const rewritten = { a: 1, persona: true };
    await scope.setBody(kong, JSON.stringify(rewritten), rewritten);
    t.is(await scope.jsonBody(kong), rewritten);
    // Without one, the new bytes are parsed.
    await scope.setBody(kong, '{"b":2}');
    t.deepEqual(await scope.jsonBody(kong), { b: 2 });
    t.deepEqual(calls, ['setRawBody', 'setRawBody'], 'no read from Kong: the bytes were kept');
  },
);

test.serial('the body is read and parsed once; a rewrite is what later plugins read', async (t) => {
  const scope = privateScope();
  const { kong, calls } = kongWith({});
  const first = await scope.jsonBody(kong);
  t.is(await scope.jsonBody(kong), first, 'the same parsed object');
  t.deepEqual(first, { a: 1 });
  await scope.setBody(kong, '{"a":2}');
  t.deepEqual(await scope.jsonBody(kong), { a: 2 });
  t.deepEqual(calls, ['body', 'setRawBody']);
  const m = await Promise.all([scope.method(kong), scope.method(kong)]);
  t.deepEqual(m, ['POST', 'POST']);
  t.is(calls.filter((c) => c === 'method').length, 1, 'concurrent readers share one call');
});

test.serial(
  'nothing held forever: released by its last holder, idle scopes and expired ones end',
  (t) => {
    const held = openScope();
    held.hold('tenant-ratelimit');
    held.hold('tenant-cache');
    held.release('tenant-ratelimit');
    t.is(findScope(held.key), held, 'one holder left');
    held.release('tenant-cache');
    t.is(findScope(held.key), undefined, 'the last holder ended it');

    const idle = openScope();
    const kept = openScope();
    kept.hold('token-meter');
    const now = Date.now();
    scopeStats(now + SCOPE_IDLE_MS + 1000);
    t.is(findScope(idle.key), undefined, 'unheld and untouched past the idle limit');
    t.truthy(findScope(kept.key), 'a held scope outlives the idle limit');
    scopeStats(now + SCOPE_TTL_MS + 1000);
    t.true(kept.expired(now + SCOPE_TTL_MS + 1000), 'and ends at its TTL, held or not');
  },
);

test.serial(
  'bounded: body bytes past the limit drop the oldest bodies, which are then read again',
  async (t) => {
    const old = adoptScope('a'.repeat(32));
    old.rememberBody(Buffer.alloc(MAX_SCOPE_BODY_BYTES / 2 + 1, 'x'));
    const young = openScope();
    young.rememberBody(Buffer.alloc(MAX_SCOPE_BODY_BYTES / 2 + 1, 'y'));
    t.is(old.bodySize, 0, 'the oldest body went');
    t.is(young.bodySize, MAX_SCOPE_BODY_BYTES / 2 + 1);
    t.true(scopeStats().bodyBytes <= MAX_SCOPE_BODY_BYTES);
    const { kong, calls } = kongWith({}, '{"again":true}');
    t.deepEqual(await old.jsonBody(kong), { again: true });
    t.deepEqual(calls, ['body']);
    old.release('x');
    young.release('x');
  },
);
