/** tenant-cache: what is cached, on purpose (plugins/tenant-cache/policy.ts). */
import test from 'ava';
import { gzipSync, brotliCompressSync, deflateSync } from 'node:zlib';
import {
  bodyVerdict,
  clientCacheControl,
  decodeBody,
  endpointOf,
  servedModelMatches,
  upstreamForbidsStore,
} from '../../plugins/tenant-cache/policy';
import { planPolicy } from '../../plugins/tenant-cache/schema';
import { readConfig } from '../../lib/schema/config';
import { Schema } from '../../plugins/tenant-cache/schema';

const config = (extra: Record<string, unknown> = {}) => readConfig(Schema, extra);
const strict = planPolicy(config(), 'pro');

test('endpoints: chat completions and embeddings, nothing else', (t) => {
  t.is(endpointOf('/v1/chat/completions', true), 'chat');
  t.is(endpointOf('/openai/v1/chat/completions?api-version=1', true), 'chat');
  t.is(endpointOf('/v1/embeddings', true), 'embeddings');
  t.is(endpointOf('/v1/embeddings', false), null);
  t.is(endpointOf('/v1/completions', true), null);
  t.is(endpointOf('/v1/chat/completions/x', true), null);
});

test('client Cache-Control and Pragma', (t) => {
  t.is(clientCacheControl({ 'cache-control': ['No-Store'] }), 'no_store');
  t.is(clientCacheControl({ 'cache-control': ['max-age=10, no-cache'] }), 'no_cache');
  t.is(clientCacheControl({ 'cache-control': ['max-age=0'] }), 'no_cache');
  t.is(clientCacheControl({ pragma: ['no-cache'] }), 'no_cache');
  t.is(clientCacheControl({ 'cache-control': ['max-age=60'] }), null);
  t.is(clientCacheControl({}), null);
});

test('chat: deterministic by temperature per plan, never streamed, a model required', (t) => {
  t.is(bodyVerdict('chat', { model: 'm', temperature: 0 }, strict), null);
  t.is(bodyVerdict('chat', { model: 'm' }, strict), 'not_deterministic', 'absent means 1');
  t.is(bodyVerdict('chat', { model: 'm', temperature: 0.2 }, strict), 'not_deterministic');
  t.is(bodyVerdict('chat', { model: 'm', temperature: '0' }, strict), 'not_deterministic');
  t.is(bodyVerdict('chat', { model: 'm', temperature: 0, stream: true }, strict), 'stream');
  t.is(bodyVerdict('chat', { temperature: 0 }, strict), 'no_model');
  const warm = planPolicy(config({ plans: { free: { max_temperature: 1 } } }), 'free');
  t.is(bodyVerdict('chat', { model: 'm' }, warm), null);
  t.is(bodyVerdict('chat', { model: 'm', temperature: 1.2 }, warm), 'not_deterministic');
  t.is(bodyVerdict('embeddings', { model: 'e', input: 'x' }, strict), null);
});

test('plan overrides fall back to the top level', (t) => {
  const c = config({
    ttl_seconds: 100,
    plans: { free: { ttl_seconds: 5 }, off: { enabled: false } },
  });
  const sem = { semantic: false, similarityThreshold: 0.95 };
  t.deepEqual(planPolicy(c, 'free'), { enabled: true, ttlSeconds: 5, maxTemperature: 0, ...sem });
  t.deepEqual(planPolicy(c, 'off'), { enabled: false, ttlSeconds: 100, maxTemperature: 0, ...sem });
  t.deepEqual(planPolicy(c, 'constructor'), {
    enabled: true,
    ttlSeconds: 100,
    maxTemperature: 0,
    ...sem,
  });
});

test('the semantic cache is off by default; a plan turns it on with its own threshold', (t) => {
  const c = config({
    plans: { pro: { semantic_enabled: true, similarity_threshold: 0.9 }, free: {} },
  });
  t.false(c.semantic.enabled, 'the schema default');
  t.like(planPolicy(c, 'pro'), { semantic: true, similarityThreshold: 0.9 });
  t.like(planPolicy(c, 'free'), { semantic: false, similarityThreshold: 0.95 });
  t.like(planPolicy(c, 'other'), { semantic: false });
  const on = config({ semantic: { enabled: true }, plans: { free: { semantic_enabled: false } } });
  t.like(planPolicy(on, 'pro'), { semantic: true });
  t.like(planPolicy(on, 'free'), { semantic: false });
});

test('served model: the same or its dated snapshot, never a sibling', (t) => {
  t.true(servedModelMatches('gpt-4o', 'gpt-4o'));
  t.true(servedModelMatches('gpt-4o', 'gpt-4o-2024-08-06'));
  t.false(servedModelMatches('gpt-4o', 'gpt-4o-mini'));
  t.false(servedModelMatches('gpt-4o', 'gpt-4o-mini-2024-07-18'));
  t.false(servedModelMatches('gpt-4o', undefined));
  t.false(servedModelMatches('gpt-4o', 'GPT-4O'));
});

test('upstream Cache-Control no-store or private forbids the store', (t) => {
  t.true(upstreamForbidsStore({ 'cache-control': ['private, max-age=0'] }));
  t.true(upstreamForbidsStore({ 'cache-control': ['no-store'] }));
  t.false(upstreamForbidsStore({ 'cache-control': ['no-cache'] }));
  t.false(upstreamForbidsStore({}));
});

test('compressed bodies are decoded, bounded; unknown encodings are not stored', (t) => {
  const body = Buffer.from(JSON.stringify({ a: 'x'.repeat(1000) }));
  t.deepEqual(decodeBody(gzipSync(body), 'gzip', 4096), body);
  t.deepEqual(decodeBody(deflateSync(body), 'deflate', 4096), body);
  t.deepEqual(decodeBody(brotliCompressSync(body), 'br', 4096), body);
  t.deepEqual(decodeBody(body, undefined, 4096), body);
  t.is(decodeBody(gzipSync(body), 'gzip', 100), 'too_large');
  t.is(decodeBody(body, 'identity', 100), 'too_large');
  t.is(decodeBody(body, 'zstd', 4096), 'encoding');
  t.is(decodeBody(Buffer.from('not gzip'), 'gzip', 4096), 'encoding');
});
