/**
 * kong.yml as the chain benchmarks run it (bench/chain.ts, bench/long-prompts.ts): pointed at
 * the run's mock upstream, the demo plans' limits lifted (the chain's cost is measured, not the
 * plans'), metrics servers off.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';

const ROOT = path.resolve(__dirname, '..', '..');

/** Kong's own plugins kept in "key-auth alone". */
const BUNDLED = new Set(['key-auth', 'post-function', 'pre-function', 'rate-limiting']);

export type Declarative = {
  services?: Array<{ url?: string }>;
  plugins?: Array<{ name: string; config?: Record<string, unknown> }>;
};

/** kong.yml pointed at this run's mock; `lean` drops retrieval-injector and the semantic cache. */
export function chainConfig(upstreamUrl: string, ours: boolean, lean = false): Declarative {
  const doc = parse(readFileSync(path.join(ROOT, 'kong.yml'), 'utf8')) as Declarative;
  for (const s of doc.services ?? []) s.url = upstreamUrl;
  doc.plugins = (doc.plugins ?? []).filter(
    (p) => (ours || BUNDLED.has(p.name)) && !(lean && p.name === 'retrieval-injector'),
  );
  const mock = new URL(upstreamUrl);
  for (const p of doc.plugins) {
    // key-auth alone has no tenant-auth: its guard (post-function access) would refuse all.
    if (!ours && p.name === 'post-function' && p.config) delete p.config.access;
    // Metrics servers off (a running `npm start` may hold the configured ports); the measured
    // setups get free ports of their own (withMetricsPorts) to count exchanges on the real Kong.
    if (p.config && 'metrics_port' in p.config) p.config.metrics_port = 0;
    if (p.name === 'retrieval-injector' && p.config) {
      const embeddings = (p.config.embeddings ?? {}) as Record<string, unknown>;
      p.config.embeddings = { ...embeddings, url: `${upstreamUrl}/v1/embeddings` };
    }
    if (p.name === 'tenant-cache' && p.config) {
      const semantic = (p.config.semantic ?? {}) as Record<string, unknown>;
      const embeddings = (semantic.embeddings ?? {}) as Record<string, unknown>;
      p.config.semantic = {
        ...semantic,
        embeddings: { ...embeddings, url: `${upstreamUrl}/v1/embeddings` },
      };
      if (lean) {
        const plans = (p.config.plans ?? {}) as Record<string, Record<string, unknown>>;
        for (const plan of Object.values(plans)) plan.semantic_enabled = false;
      }
    }
    if (p.name === 'circuit-breaker' && p.config) {
      const upstreams = (p.config.upstreams ?? {}) as Record<string, Record<string, unknown>>;
      for (const u of Object.values(upstreams)) {
        u.host = mock.hostname;
        u.port = Number(mock.port);
      }
    }
    // The chain's cost, not the demo plan's limits: lifted, but for globex, which is refused.
    if (p.name === 'tenant-ratelimit' && p.config) {
      const lifted = {
        requests_per_minute: 1_000_000,
        request_burst: 100_000,
        tokens_per_minute: 1_000_000_000,
        max_concurrent: 64,
      };
      p.config.default_limits = lifted;
      p.config.plans = { free: lifted, pro: lifted };
      p.config.tenants = { globex: { ...lifted, requests_per_minute: 1, request_burst: 1 } };
    }
  }
  return doc;
}

/** The built plugin-server directory of each of our plugins `config` enables. */
export function serversFor(config: Declarative): Record<string, string> {
  const dist = path.join(ROOT, 'dist', 'pluginservers');
  const used = new Set((config.plugins ?? []).map((p) => p.name));
  return Object.fromEntries(
    readdirSync(dist)
      .filter((n) => used.has(n))
      .map((n) => [n, path.join(dist, n)]),
  );
}
