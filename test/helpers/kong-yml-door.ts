/**
 * The repo's own kong.yml (what `npm start` and the compose stack run) as a front door for a
 * test, on whichever gateway GATEWAY names: the whole chain, with only what must differ per run
 * changed: the upstream addresses (this run's mock), Redis key namespaces (random, removed in
 * teardown), metrics servers off, secrets through the plugin servers' environment. `adjust`
 * may change a plugin's config further (a lower limit to reach a refusal quickly).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import type { Gateway } from '../../harness/index';
import {
  ROOT,
  startFrontDoors,
  type ConsumerEntry,
  type FrontDoor,
  type FrontDoorOptions,
  type OnClose,
} from './frontdoor';
import { deleteKeysMatching } from './redis-cleanup';

export interface KongYmlEntry {
  name: string;
  config?: Record<string, unknown>;
}

export interface KongYmlDoor extends FrontDoor {
  namespace: string;
  /** Every node (the first is `gateway`): one config, one Redis namespace, one mock upstream. */
  gateways: Gateway[];
  /** The declarative config the nodes started with (what a reload test changes). */
  config: Record<string, unknown>;
}

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

export interface KongYmlDoorOptions extends FrontDoorOptions {
  /**
   * The Redis every Redis-backed plugin of the chain is pointed at; default REDIS_URL. A
   * Redis Cluster URL (`redis://host:port?cluster=1&nodes=…`) runs the chain on a cluster.
   */
  redisUrl?: string;
  /** Fields merged into kong.yml's services (e.g. a shorter `read_timeout`). */
  service?: Record<string, unknown>;
  /** Fields merged into kong.yml's consumers, by username (e.g. `acls` for Kong's acl). */
  consumerFields?: Record<string, Record<string, unknown>>;
  /** Plugin entries added to kong.yml's (Kong's own AI plugins beside the chain). */
  extraPlugins?: Array<KongYmlEntry & Record<string, unknown>>;
}

export async function startKongYmlDoor(
  onClose: OnClose,
  /** Called for every plugin entry after the per-run changes, with this run's mock upstream. */
  adjust: (p: KongYmlEntry, upstreamUrl: string) => void = () => undefined,
  /** Consumers added to kong.yml's (a tenant of the test's own). */
  extraConsumers: ConsumerEntry[] = [],
  /** Plugins of kong.yml left out (by name). */
  without: string[] = [],
  /**
   * More plugin-server environment (added to the secrets below), kong.conf settings, nginx
   * workers per node, the Redis to use, and `service`: fields merged into kong.yml's services
   * (e.g. a shorter `read_timeout`).
   */
  options: KongYmlDoorOptions = {},
  /** Gateway nodes sharing the config (a cluster, as far as Redis is concerned). */
  nodes = 1,
): Promise<KongYmlDoor> {
  const namespace = `kyd${randomBytes(4).toString('hex')}`;
  const { redisUrl = REDIS_URL, extraPlugins = [], consumerFields = {}, ...doorOptions } = options;
  onClose(async () => {
    await deleteKeysMatching(redisUrl, `${namespace}*`);
  });
  const cluster = await startFrontDoors(
    onClose,
    (upstreamUrl) => {
      const doc = parse(readFileSync(path.join(ROOT, 'kong.yml'), 'utf8')) as {
        services: Array<Record<string, unknown>>;
        plugins: KongYmlEntry[];
        consumers: ConsumerEntry[];
      };
      doc.consumers = [...doc.consumers, ...extraConsumers].map((c) => ({
        ...c,
        ...(consumerFields[c.username] ?? {}),
      }));
      doc.plugins = [...doc.plugins.filter((p) => !without.includes(p.name)), ...extraPlugins];
      const mock = new URL(upstreamUrl);
      for (const s of doc.services) Object.assign(s, options.service ?? {}, { url: upstreamUrl });
      for (const p of doc.plugins) {
        const c = p.config;
        if (!c) continue;
        // Metrics servers off everywhere: another run may hold the configured ports.
        if ('metrics_port' in c) c.metrics_port = 0;
        const redis = c.redis as Record<string, unknown> | undefined;
        if (p.name === 'tenant-auth') {
          const so = (c.stored_objects ?? {}) as Record<string, unknown>;
          const soRedis = (so.redis ?? {}) as Record<string, unknown>;
          c.stored_objects = {
            ...so,
            redis: { ...soRedis, url: redisUrl, key_namespace: `${namespace}ta` },
          };
        }
        if (p.name === 'tenant-ratelimit' && redis)
          c.redis = { ...redis, url: redisUrl, key_namespace: `${namespace}rl` };
        if (p.name === 'tenant-cache')
          c.redis = { ...redis, url: redisUrl, key_namespace: `${namespace}tc` };
        if (p.name === 'token-meter')
          c.redis = { ...redis, url: redisUrl, key_namespace: `${namespace}tm` };
        if (p.name === 'retrieval-injector') {
          const embeddings = (c.embeddings ?? {}) as Record<string, unknown>;
          c.embeddings = { ...embeddings, url: `${upstreamUrl}/v1/embeddings` };
          if (redis) c.redis = { ...redis, url: redisUrl, key_namespace: `${namespace}ri` };
          const milvus = (c.milvus ?? {}) as Record<string, unknown>;
          if (process.env.MILVUS_ADDRESS)
            c.milvus = { ...milvus, address: process.env.MILVUS_ADDRESS };
        }
        if (p.name === 'circuit-breaker') {
          const upstreams = (c.upstreams ?? {}) as Record<string, Record<string, unknown>>;
          for (const u of Object.values(upstreams)) {
            u.host = mock.hostname;
            u.port = Number(mock.port);
          }
        }
        adjust(p, upstreamUrl);
      }
      return doc as unknown as Record<string, unknown>;
    },
    {
      ...doorOptions,
      env: {
        KTA_KNOWLEDGE_SECRET: randomBytes(32).toString('hex'),
        KTA_CACHE_MASTER_KEY: randomBytes(32).toString('hex'),
        ...doorOptions.env,
      },
      nodes,
    },
  );
  const gateway = cluster.gateways[0] as Gateway;
  return {
    gateway,
    upstream: cluster.upstream,
    url: gateway.url,
    gateways: cluster.gateways,
    config: cluster.config,
    namespace,
  };
}
