/**
 * tenant-cache's stored formats do not drift: vectors written by the code before its split by
 * concept (issue 20, commit e646a8c) — an entry's key, a semantic scope, a sealed entry and a
 * sealed semantic row, under a fixed master secret — are named and opened the same today. A
 * change here makes every entry in Redis and every row in Milvus unreachable: it must come
 * with a new KEY_FORMAT_VERSION or SCOPE_FORMAT_VERSION, not by accident.
 */
import test from 'ava';
import { createKeyspace } from '../../lib/redis/keys';
import { createTenantContext } from '../../lib/tenant/context';
import { cacheKeyFor } from '../../plugins/tenant-cache/cache-key';
import { CacheKeyring } from '../../plugins/tenant-cache/crypto';
import { decodeEntry } from '../../plugins/tenant-cache/entry';
import { semanticScope } from '../../plugins/tenant-cache/semantic/key';
import { openRow } from '../../plugins/tenant-cache/semantic/row';

const keyring = new CacheKeyring(Buffer.alloc(32, 0x11));
const ctx = createTenantContext({
  tenantId: 'acme',
  plan: 'pro',
  source: 'consumer',
  subject: 'acme-app',
  policy: {
    toolsAllowed: ['search', 'calculator'],
    preferredModel: 'gpt-4o-mini',
    fallbackModel: 'gpt-4o',
    persona: 'You help.',
    knowledgeNamespace: 'acme',
    weight: 2,
    models: [],
  },
});
const request = {
  method: 'POST',
  pathWithQuery: '/v1/chat/completions',
  routeId: 'route-1',
  serviceId: 'service-1',
};
const gens = { knowledge: '0', cache: 'p0123' };
const response = {
  createdAt: 1765000000000,
  contentType: 'application/json',
  model: 'gpt-4o-mini',
  body: '{"id":"chatcmpl-1","model":"gpt-4o-mini"}',
};

const DIGEST = '88ed453a334a31639950eaa9f360e428b73c40c4828e8f2aef192081acc4643c';
const SCOPE = 'f370fa12a1dbc1280208f8f759ae1522293638284f73759890e943278e323ac4';
const ENTRY =
  'tc1.a6606e3ead49.0.p0123.KX9plctasH0H4nck/dd62M7OCb6mefkfH+tn9KwtYxf1GWyXixMluKR+qalYytlOS0kkAdWak8/kr4BL5IGr+xzN0KWkNrwpijNj2jyOSP+/gHfRnRa0fwQqNlg2YF7i1e/c8U7RzTCenPiuA166qRQvhTXKQ2+cS0flpNkfcmLfg+mPn8e38Zjd38NfEHd1';
const ROW =
  'sc1.a6606e3ead49.bHBeG85vqMIWo4k7V7HE1e3SADaPEdefacFcfAtU2twyV1ubKaZJxifzvRbaC0uBoyc/TSWKxLhWNI92lhFofBxdqme39dx2rG52ovdrWJJ+04VlQVZVMsy3y1wrJFqZozpTUXxSyPBmc0hnDqJYo30TKerBQwMpSNThmiHnMdBNj6xSGbWVpZp1ruILQM7A';
const ROW_EXPIRES_AT = 1765000300;

test('an entry is named as before', (t) => {
  const key = cacheKeyFor(ctx, keyring, createKeyspace('kta'), {
    ...request,
    canonicalBody:
      '{"messages":[{"content":"hi","role":"user"}],"model":"gpt-4o-mini","temperature":0}',
  });
  t.is(key.digest, DIGEST);
  t.is(String(key.redisKey), `kta:{t:acme}:cache:e:${DIGEST}`);
});

test('a semantic scope is named as before', (t) => {
  const scope = semanticScope(
    ctx,
    keyring,
    {
      ...request,
      context:
        '{"messages":[{"content":null,"role":"user"}],"model":"gpt-4o-mini","temperature":0}',
    },
    gens,
  );
  t.is(scope, SCOPE);
});

test('an entry sealed before opens, and only under its own key and generations', (t) => {
  const keys = keyring.forTenant(ctx);
  const redisKey = createKeyspace('kta').cacheEntry(ctx.tenantId, DIGEST);
  t.deepEqual(decodeEntry(keys, redisKey, gens, ENTRY), { kind: 'hit', response });
  // Controls: the same value read under another generation, or under another key.
  t.deepEqual(decodeEntry(keys, redisKey, { ...gens, cache: 'p9' }, ENTRY), { kind: 'stale' });
  const moved = createKeyspace('kta').cacheEntry(ctx.tenantId, SCOPE);
  t.deepEqual(decodeEntry(keys, moved, gens, ENTRY), { kind: 'forged' });
});

test('a semantic row sealed before opens, and only in its own scope', (t) => {
  const keys = keyring.forTenant(ctx);
  t.deepEqual(openRow(keys, SCOPE, ROW_EXPIRES_AT, ROW), response);
  t.is(openRow(keys, DIGEST, ROW_EXPIRES_AT, ROW), 'forged');
  t.is(openRow(keys, SCOPE, ROW_EXPIRES_AT + 1, ROW), 'forged');
});
