/**
 * lib/capture/store.ts against the real Redis at REDIS_URL: a capture is stored sealed in the
 * tenant's keyspace with the configured TTL (and its signed owner entry with the same TTL),
 * opens for its tenant only, and a value moved under another tenant's key, or an owner entry
 * written without the secret, is refused. Each test in its own random key namespace.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { CaptureKeyring } from '../../lib/capture/crypto';
import { CAPTURE_RECORD_VERSION, type CaptureRecord } from '../../lib/capture/record';
import { findCaptureOwner, loadCapture, storeCapture } from '../../lib/capture/store';
import { closeAllRedis } from '../../lib/redis/client';
import { parseTenantId, type TenantId } from '../../lib/tenant/tenant-id';
import { connectRedis, deleteKeyspace, randomKeyspace } from './services';

test.after.always(closeAllRedis);

const acme = parseTenantId('acme');
const globex = parseTenantId('globex');

function record(tenant: TenantId, requestId: string, marker: string): CaptureRecord {
  return {
    v: CAPTURE_RECORD_VERSION,
    tenant,
    plan: 'pro',
    requestId,
    capturedAt: Date.now(),
    request: {
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { 'content-type': ['application/json'] },
      body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: marker }] }),
      bodyEncoding: 'utf8',
      bodyBytes: 80,
    },
    bodyOmitted: null,
    outcome: {
      status: 200,
      modelRequested: 'gpt-4o',
      modelServed: 'gpt-4o',
      cacheStatus: 'MISS',
      budgetState: 'ok',
      usage: { promptTokens: 9, completionTokens: 4, totalTokens: 13, cachedTokens: 0 },
      stream: false,
      answer: `mock answer to: ${marker}`,
      errorCode: null,
      answerTruncated: false,
    },
  };
}

test('stored sealed, with the TTL, in the tenant keyspace; opens for its tenant only', async (t) => {
  const redis = await connectRedis();
  const keys = randomKeyspace();
  t.teardown(() => deleteKeyspace(redis, keys));
  const ring = new CaptureKeyring(randomBytes(32));
  const rid = randomBytes(16).toString('hex');
  const marker = `secret-prompt-${randomBytes(4).toString('hex')}`;
  await storeCapture(redis, keys, ring, acme, record(acme, rid, marker), 3600);

  const raw = await redis.get(keys.capture(acme, rid));
  t.truthy(raw);
  t.false(String(raw).includes(marker), 'the prompt is not readable in Redis');
  const ttl = Number(await redis.ttl(keys.capture(acme, rid)));
  t.true(ttl > 3500 && ttl <= 3600, `capture TTL ${ttl}`);
  const ownerTtl = Number(await redis.ttl(keys.captureOwner(rid)));
  t.true(ownerTtl > 3500 && ownerTtl <= 3600, `owner entry TTL ${ownerTtl}`);

  // positive control: acme's capture, by acme, and by the signed owner entry
  const mine = await loadCapture(redis, keys, ring, acme, rid);
  t.is(mine.kind, 'found');
  if (mine.kind === 'found') t.is(mine.record.outcome.answer, `mock answer to: ${marker}`);
  t.deepEqual(await findCaptureOwner(redis, keys, ring, rid), { kind: 'owner', tenant: acme });

  // globex asking for acme's request id finds nothing in its own keyspace
  t.deepEqual(await loadCapture(redis, keys, ring, globex, rid), { kind: 'absent' });
  // acme's sealed value copied under globex's key does not open there
  await redis.set(keys.capture(globex, rid), String(raw), {
    expiration: { type: 'EX', value: 60 },
  });
  t.deepEqual(await loadCapture(redis, keys, ring, globex, rid), { kind: 'sealed_elsewhere' });
  // another secret opens nothing
  t.deepEqual(await loadCapture(redis, keys, new CaptureKeyring(randomBytes(32)), acme, rid), {
    kind: 'sealed_elsewhere',
  });
});

test('an owner entry written without the secret is refused', async (t) => {
  const redis = await connectRedis();
  const keys = randomKeyspace();
  t.teardown(() => deleteKeyspace(redis, keys));
  const ring = new CaptureKeyring(randomBytes(32));
  const rid = randomBytes(16).toString('hex');
  await storeCapture(redis, keys, ring, acme, record(acme, rid, 'x'), 120);
  const genuine = String(await redis.get(keys.captureOwner(rid)));
  t.true(genuine.startsWith('acme '));
  // Someone with write access to Redis points acme's request id at globex.
  await redis.set(keys.captureOwner(rid), genuine.replace(/^acme /, 'globex '));
  t.deepEqual(await findCaptureOwner(redis, keys, ring, rid), { kind: 'forged' });
  await redis.set(keys.captureOwner(rid), 'acme}{t:globex deadbeef');
  t.deepEqual(await findCaptureOwner(redis, keys, ring, rid), { kind: 'forged' });
  await redis.del(keys.captureOwner(rid));
  t.deepEqual(await findCaptureOwner(redis, keys, ring, rid), { kind: 'absent' });
});
