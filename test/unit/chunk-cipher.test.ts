import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import {
  ChunkCipher,
  ChunkIntegrityError,
  KnowledgeSecretError,
  loadKnowledgeSecret,
} from '../../lib/retrieval/chunk-cipher';
import { parseTenantId } from '../../lib/tenant/tenant-id';

const acme = parseTenantId('acme');
const globex = parseTenantId('globex');

test('a sealed chunk opens for its tenant only', (t) => {
  const c = new ChunkCipher(randomBytes(32));
  const sealed = c.seal(acme, 'secret text ✓');
  t.regex(sealed, /^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
  t.false(sealed.includes('secret'));
  t.is(c.open(acme, sealed), 'secret text ✓');
  t.throws(() => c.open(globex, sealed), { instanceOf: ChunkIntegrityError });
  t.not(c.seal(acme, 'same'), c.seal(acme, 'same'), 'random IV per seal');
});

test('another secret, a flipped byte or a malformed value does not open', (t) => {
  const c = new ChunkCipher(randomBytes(32));
  const sealed = c.seal(acme, 'hello world');
  t.throws(() => new ChunkCipher(randomBytes(32)).open(acme, sealed), {
    instanceOf: ChunkIntegrityError,
  });
  const parts = sealed.split('.');
  const ct = Buffer.from(parts[3] ?? '', 'base64url');
  ct[0] = (ct[0] ?? 0) ^ 1;
  parts[3] = ct.toString('base64url');
  t.throws(() => c.open(acme, parts.join('.')), { instanceOf: ChunkIntegrityError });
  t.throws(() => c.open(acme, 'plain text'), { instanceOf: ChunkIntegrityError });
  t.throws(() => c.open(acme, 'v1.AA.AA.AA'), { instanceOf: ChunkIntegrityError });
});

test('source digests are per tenant and opaque', (t) => {
  const c = new ChunkCipher(randomBytes(32));
  t.regex(c.sourceDigest(acme, 'plan.md'), /^[0-9a-f]{64}$/);
  t.is(c.sourceDigest(acme, 'plan.md'), c.sourceDigest(acme, 'plan.md'));
  t.not(c.sourceDigest(acme, 'plan.md'), c.sourceDigest(globex, 'plan.md'));
});

test('the operator secret: file wins over env, short or missing secrets are refused unechoed', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kta-secret-'));
  const file = path.join(dir, 's');
  writeFileSync(file, `${'f'.repeat(40)}\n`);
  t.is(loadKnowledgeSecret({ file, env: 'X' }, { X: 'e'.repeat(40) }).toString(), 'f'.repeat(40));
  t.is(loadKnowledgeSecret({ env: 'X' }, { X: 'e'.repeat(40) }).toString(), 'e'.repeat(40));
  const short = t.throws(() => loadKnowledgeSecret({ env: 'X' }, { X: 'tooshort' }), {
    instanceOf: KnowledgeSecretError,
  });
  t.false(short?.message.includes('tooshort'));
  t.throws(() => loadKnowledgeSecret({ env: 'X' }, {}), { instanceOf: KnowledgeSecretError });
  t.throws(() => loadKnowledgeSecret({ file: path.join(dir, 'missing') }), {
    instanceOf: KnowledgeSecretError,
  });
});
