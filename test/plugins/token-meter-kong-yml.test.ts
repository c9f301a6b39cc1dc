/**
 * The repo's own kong.yml (what `npm start` and the compose stack run): a demo tenant's chat
 * request is metered and its usage shows in its showback. Only the upstream addresses, the
 * Redis key namespace and the metrics ports are changed for the test.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { ROOT, chat, eventually, send, startFrontDoor } from '../helpers/frontdoor';
import { deleteKeysMatching } from '../helpers/redis-cleanup';

interface Entry {
  name: string;
  config?: Record<string, unknown>;
}

test('kong.yml meters a demo tenant end to end, the post-function snippet included', async (t) => {
  const namespace = `tmy${randomBytes(4).toString('hex')}`;
  const door = await startFrontDoor(
    t.teardown,
    (upstreamUrl) => {
      const doc = parse(readFileSync(path.join(ROOT, 'kong.yml'), 'utf8')) as {
        services: Array<{ url: string }>;
        plugins: Entry[];
      };
      for (const s of doc.services) s.url = upstreamUrl;
      for (const p of doc.plugins) {
        // Metrics servers off everywhere: another run may hold the configured ports.
        if (p.config && 'metrics_port' in p.config) p.config = { ...p.config, metrics_port: 0 };
        if (p.name === 'retrieval-injector') {
          const embeddings = (p.config?.embeddings ?? {}) as Record<string, unknown>;
          const milvus = (p.config?.milvus ?? {}) as Record<string, unknown>;
          p.config = {
            ...p.config,
            embeddings: { ...embeddings, url: `${upstreamUrl}/v1/embeddings` },
            // A collection of its own: the shared one may hold chunks sealed under another
            // run's knowledge secret (npm start's), which fail the integrity check by design.
            milvus: { ...milvus, collection: `kta_knowledge_${namespace}` },
          };
        }
        if (p.name === 'tenant-cache') {
          // The semantic cache's embeddings, like retrieval's, come from this run's mock.
          const semantic = (p.config?.semantic ?? {}) as Record<string, unknown>;
          const embeddings = (semantic.embeddings ?? {}) as Record<string, unknown>;
          p.config = {
            ...p.config,
            semantic: {
              ...semantic,
              embeddings: { ...embeddings, url: `${upstreamUrl}/v1/embeddings` },
            },
          };
        }
        if (p.name === 'token-meter') {
          p.config = {
            ...p.config,
            redis: {
              ...(p.config?.redis as object),
              key_namespace: namespace,
              url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
            },
            metrics_port: 0,
          };
        }
        if (p.name === 'tenant-auth') p.config = { ...p.config, metrics_port: 0 };
        if (p.name === 'circuit-breaker') {
          // Its per-plan upstreams name the local mock's port too: point them at this one.
          const mock = new URL(upstreamUrl);
          const upstreams = (p.config?.upstreams ?? {}) as Record<string, Record<string, unknown>>;
          for (const u of Object.values(upstreams)) {
            u.host = mock.hostname;
            u.port = Number(mock.port);
          }
          p.config = { ...p.config, metrics_port: 0 };
        }
      }
      return doc as unknown as Record<string, unknown>;
    },
    { env: { KTA_KNOWLEDGE_SECRET: randomBytes(32).toString('hex') } },
  );
  // Per slot: a Redis Cluster refuses one DEL across slots (test/helpers/redis-cleanup.ts).
  t.teardown(async () => {
    await deleteKeysMatching(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', `${namespace}:*`);
  });
  const res = await send(`${door.url}/v1/chat/completions`, {
    headers: [['apikey', 'acme-demo-key']],
    body: chat('hello'),
  });
  t.is(res.status, 200, res.text);
  t.is(res.headers['x-budget-state'], 'ok');
  t.truthy(res.headers['x-budget-remaining-usd'], 'acme is on pro: a money budget');
  const usage = (res.json as { usage: { prompt_tokens: number } }).usage;
  const start = Math.floor(Date.now() / 1000) - 86_400;
  const results = await eventually(async () => {
    const r = await send(
      `${door.url}/v1/organization/usage/completions?start_time=${start}&limit=2`,
      { headers: [['apikey', 'acme-demo-key']] },
    );
    const list = (r.json as { data?: Array<{ results: Array<{ input_tokens: number }> }> }).data;
    const flat = list?.flatMap((b) => b.results) ?? [];
    return flat.length > 0 ? flat : undefined;
  });
  t.is(results[0]?.input_tokens, usage.prompt_tokens);
});
