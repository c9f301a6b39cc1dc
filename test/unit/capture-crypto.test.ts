/**
 * Request capture's crypto, keys and record (lib/capture/): a capture opens only under its own
 * tenant's key and request id and this secret; keys carry the tenant's hash tag and refuse
 * ids that could forge one; credentials never enter a draft; the opt-in is off by default.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import {
  CaptureKeyring,
  CaptureSecretError,
  decodeCaptureSecret,
  loadCaptureSecret,
  openCapture,
  sealCapture,
} from '../../lib/capture/crypto';
import { captureEnabled } from '../../lib/capture/draft';
import { capturableHeaders, draftFrom, readAnswer } from '../../lib/capture/record';
import { hashSlot } from '../../lib/redis/hash-slot';
import { InvalidKeyPartError, createKeyspace } from '../../lib/redis/keys';
import { parseTenantId } from '../../lib/tenant/tenant-id';

const acme = parseTenantId('acme');
const globex = parseTenantId('globex');
const RID = '6f1c0d4e8a2b4c7d9e0f1a2b3c4d5e6f';
const secret = () => randomBytes(32);

test('a capture sealed for acme opens for acme only, for its request id only, under its secret only', (t) => {
  const master = secret();
  const ring = new CaptureKeyring(master);
  const plain = Buffer.from('{"marker":"acme-private-prompt"}');
  const sealed = sealCapture(ring, acme, RID, plain);
  t.false(sealed.includes(Buffer.from('acme-private-prompt')), 'the plaintext is not in the value');
  // positive control: the owner, the id, the secret
  t.deepEqual(openCapture(ring, acme, RID, sealed), plain);
  t.deepEqual(openCapture(new CaptureKeyring(Buffer.from(master)), acme, RID, sealed), plain);
  // another tenant's key, another request id, another secret, flipped bits: nothing opens
  t.is(openCapture(ring, globex, RID, sealed), null);
  t.is(openCapture(ring, acme, RID.replace('6f1c', '6f1d'), sealed), null);
  t.is(openCapture(new CaptureKeyring(secret()), acme, RID, sealed), null);
  const tampered = Buffer.from(sealed);
  tampered[20] = (tampered[20] ?? 0) ^ 1;
  t.is(openCapture(ring, acme, RID, tampered), null);
  t.is(openCapture(ring, acme, RID, sealed.subarray(0, 20)), null);
});

test('tenants get unrelated keys; the owner entry signature names tenant and id', (t) => {
  const ring = new CaptureKeyring(secret());
  t.notDeepEqual(ring.sealKey(acme), ring.sealKey(globex));
  const mac = ring.indexMac(acme, RID);
  t.true(ring.checkIndexMac(acme, RID, mac));
  t.false(ring.checkIndexMac(globex, RID, mac), 'the same signature does not vouch for globex');
  t.false(ring.checkIndexMac(acme, `${RID}00`, mac));
  t.false(ring.checkIndexMac(acme, RID, 'f'.repeat(64)));
  t.false(ring.checkIndexMac(acme, RID, 'not hex'));
});

test('the secret: 32+ bytes of hex or base64, from the environment first, never echoed', (t) => {
  const hex = randomBytes(32).toString('hex');
  t.is(decodeCaptureSecret(hex).length, 32);
  t.is(decodeCaptureSecret(randomBytes(40).toString('base64')).length, 40);
  const short = t.throws(() => decodeCaptureSecret('abcd'), { instanceOf: CaptureSecretError });
  t.false(short?.message.includes('abcd') ?? true);
  t.is(loadCaptureSecret({ env: 'X_CAP', file: null }, { X_CAP: hex }).toString('hex'), hex);
  t.throws(() => loadCaptureSecret({ env: 'X_CAP', file: null }, {}), {
    instanceOf: CaptureSecretError,
    message: /X_CAP/,
  });
});

test('capture keys live in the tenant slot; the owner entry in its own; ids cannot forge a tag', (t) => {
  const keys = createKeyspace('kta');
  const key = keys.capture(acme, RID);
  t.is(String(key), `kta:{t:acme}:capture:${RID}`);
  t.is(hashSlot(key), hashSlot(keys.budget(acme, '2026-12')), 'same slot as acme’s other state');
  t.is(String(keys.captureOwner(RID)), `kta:{c:${RID}}:capture-owner`);
  for (const bad of [
    'abc}{t:globex',
    'x:y:zzzzzz',
    'short',
    '*'.repeat(10),
    `${'a'.repeat(129)}`,
  ]) {
    t.throws(() => keys.capture(acme, bad), { instanceOf: InvalidKeyPartError }, bad);
    t.throws(() => keys.captureOwner(bad), { instanceOf: InvalidKeyPartError }, bad);
  }
});

test('a draft keeps the request headers but never a credential, whatever its spelling', (t) => {
  const headers = capturableHeaders(
    {
      authorization: ['Bearer sk-secret'],
      apikey: ['acme-demo-key'],
      'x-api-key': ['k'],
      cookie: ['session=1'],
      'x-acme-token': ['t'],
      'x-custom-cred': ['c'],
      'content-type': ['application/json'],
      'x-request-priority': ['low'],
      'content-length': ['12'],
      host: ['gw'],
      'x-consumer-id': ['set-by-key-auth'],
      'x-tenant-id': ['spoofed'],
    },
    new Set(['x-custom-cred']),
  );
  t.deepEqual(headers, {
    'content-type': ['application/json'],
    'x-request-priority': ['low'],
  });
  const d = draftFrom(headers, Buffer.from('{"a":1}'));
  t.is(d.body, '{"a":1}');
  t.is(d.bodyEncoding, 'utf8');
  const bin = draftFrom(headers, Buffer.from([0xff, 0x00, 0xfe]));
  t.is(bin.bodyEncoding, 'base64');
  t.deepEqual(Buffer.from(bin.body ?? '', 'base64'), Buffer.from([0xff, 0x00, 0xfe]));
});

test('opt-in: off by default; the plan turns it on; a tenant override wins either way', (t) => {
  const cfg = {
    plans: { pro: { capture: true }, free: { capture: false }, bare: {} },
    tenants: { acme: { capture: false }, globex: { capture: true }, initech: { capture: null } },
  };
  t.false(captureEnabled(cfg, parseTenantId('other'), 'free'));
  t.false(captureEnabled(cfg, parseTenantId('other'), 'bare'));
  t.false(captureEnabled(cfg, parseTenantId('other'), 'unknown'));
  t.true(captureEnabled(cfg, parseTenantId('other'), 'pro'));
  t.false(captureEnabled(cfg, acme, 'pro'), 'acme opted out of its plan’s capture');
  t.true(captureEnabled(cfg, globex, 'free'), 'globex opted in on a plan without capture');
  t.true(captureEnabled(cfg, parseTenantId('initech'), 'pro'), 'null keeps the plan’s');
  t.false(captureEnabled({ plans: {}, tenants: {} }, acme, 'pro'));
});

test('answers are read from a completion, a stream, or an error body', (t) => {
  t.deepEqual(
    readAnswer(
      '{"model":"gpt-4o","choices":[{"message":{"role":"assistant","content":"hello there"}}]}',
    ),
    { text: 'hello there', errorCode: null, stream: false, model: 'gpt-4o' },
  );
  const sse = [
    'data: {"model":"m1","choices":[{"delta":{"content":"hel"}}]}',
    'data: {"model":"m1","choices":[{"delta":{"content":"lo"}}]}',
    'data: [DONE]',
    '',
  ].join('\n\n');
  t.deepEqual(readAnswer(sse), { text: 'hello', errorCode: null, stream: true, model: 'm1' });
  t.deepEqual(
    readAnswer('{"error":{"message":"no","type":"insufficient_quota","code":"budget_exhausted"}}'),
    { text: 'no', errorCode: 'budget_exhausted', stream: false, model: null },
  );
  t.is(
    readAnswer('{"choices":[{"message":{"content":"cut sho').text,
    '{"choices":[{"message":{"content":"cut sho',
  );
});
