/**
 * `npm run ingest -- --tenant acme docs/*.md`: chunk, embed and store a tenant's documents in
 * the shared knowledge collection (each file replaces its earlier chunks), then bump the
 * tenant's knowledge generation. `--offboard` deletes every chunk of the tenant instead,
 * verifies none is left, and bumps the generation.
 *
 * Settings default to what kong.yml's retrieval-injector uses locally; each has a flag and
 * an environment variable. The operator secret comes from --secret-file or
 * KTA_KNOWLEDGE_SECRET (the plugin must be given the same secret).
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { createMilvus, type VectorIndexType } from '../lib/milvus/client';
import { closeAllRedis, createRedis, waitForRedis } from '../lib/redis/client';
import { createKeyspace } from '../lib/redis/keys';
import { ChunkCipher, loadKnowledgeSecret } from '../lib/retrieval/chunk-cipher';
import { Embedder } from '../lib/retrieval/embedder';
import { KnowledgeStore } from '../lib/retrieval/knowledge-store';
import { DEFAULT_CHUNKING, ingestDocuments, offboardTenant } from '../lib/retrieval/knowledge-ops';
import { parseTenantId } from '../lib/tenant/tenant-id';

const USAGE = `usage: npm run ingest -- --tenant <id> [options] <file>...
       npm run ingest -- --tenant <id> --offboard
options (environment variable in brackets):
  --milvus <host:port>        [MILVUS_ADDRESS]        default 127.0.0.1:19530
  --collection <name>         [KTA_KNOWLEDGE_COLLECTION] default kta_knowledge
  --num-partitions <n>        default 64 (when the collection is created)
  --index-type FLAT|HNSW      default FLAT; must match the plugin's milvus.index_type
  --embeddings-url <url>      [KTA_EMBEDDINGS_URL]    default http://127.0.0.1:9000/v1/embeddings
  --model <name>              [KTA_EMBEDDINGS_MODEL]  default text-embedding-3-small
  --dim <n>                   [KTA_EMBEDDINGS_DIM]    default 64
  --api-key-env <VAR>         environment variable holding the embeddings API key
  --redis-url <url>           [REDIS_URL]             default redis://127.0.0.1:6379
  --key-namespace <ns>        default kta
  --secret-file <path>        else KTA_KNOWLEDGE_SECRET
  --chunk-size <chars>        default ${DEFAULT_CHUNKING.chunkSize}
  --chunk-overlap <chars>     default ${DEFAULT_CHUNKING.chunkOverlap}`;

function fail(message: string): never {
  process.stderr.write(`ingest: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function positiveInt(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) fail(`--${name} must be a non-negative integer, got ${v}`);
  return n;
}

function indexType(value: string | undefined): VectorIndexType {
  if (value !== 'FLAT' && value !== 'HNSW') fail(`--index-type must be FLAT or HNSW`);
  return value;
}

async function main(): Promise<void> {
  const env = process.env;
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      tenant: { type: 'string' },
      offboard: { type: 'boolean', default: false },
      milvus: { type: 'string', default: env.MILVUS_ADDRESS ?? '127.0.0.1:19530' },
      collection: { type: 'string', default: env.KTA_KNOWLEDGE_COLLECTION ?? 'kta_knowledge' },
      'num-partitions': { type: 'string', default: '64' },
      'index-type': { type: 'string', default: 'FLAT' },
      'embeddings-url': {
        type: 'string',
        default: env.KTA_EMBEDDINGS_URL ?? 'http://127.0.0.1:9000/v1/embeddings',
      },
      model: { type: 'string', default: env.KTA_EMBEDDINGS_MODEL ?? 'text-embedding-3-small' },
      dim: { type: 'string', default: env.KTA_EMBEDDINGS_DIM ?? '64' },
      'api-key-env': { type: 'string' },
      'redis-url': { type: 'string', default: env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
      'key-namespace': { type: 'string', default: 'kta' },
      'secret-file': { type: 'string' },
      'chunk-size': { type: 'string', default: String(DEFAULT_CHUNKING.chunkSize) },
      'chunk-overlap': { type: 'string', default: String(DEFAULT_CHUNKING.chunkOverlap) },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  let tenant;
  try {
    tenant = parseTenantId(values.tenant);
  } catch (e) {
    fail(`--tenant: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!values.offboard && positionals.length === 0) fail('no files to ingest');
  if (values.offboard && positionals.length > 0) fail('--offboard takes no files');

  const secret = loadKnowledgeSecret({
    file: values['secret-file'] ?? null,
    env: 'KTA_KNOWLEDGE_SECRET',
  });
  const dim = positiveInt('dim', values.dim);
  const milvus = await createMilvus({ address: values.milvus, timeoutMs: 30_000 });
  const redis = createRedis({ url: values['redis-url'], commandTimeoutMs: 5000 });
  try {
    await waitForRedis(redis, 10_000);
    const store = await KnowledgeStore.open({
      client: milvus,
      collection: {
        name: values.collection,
        dim,
        numPartitions: positiveInt('num-partitions', values['num-partitions']),
        indexType: indexType(values['index-type']),
        metricType: 'COSINE',
        textMaxLength: 16384,
        embeddingModel: values.model,
      },
      cipher: new ChunkCipher(secret),
      consistency: 'Strong',
      searchTimeoutMs: 10_000,
    });
    const apiKeyEnv = values['api-key-env'];
    const embedder = new Embedder({
      url: values['embeddings-url'],
      model: values.model,
      dim,
      sendDimensions: true,
      apiKey: apiKeyEnv ? (env[apiKeyEnv] ?? null) : null,
      timeoutMs: 30_000,
      cache: null,
    });
    const ops = { store, embedder, redis, keyspace: createKeyspace(values['key-namespace']) };
    if (values.offboard) {
      const generation = await offboardTenant(ops, tenant);
      process.stdout.write(
        `offboarded ${tenant}: 0 chunks left in ${values.collection}; knowledge generation ${generation}\n`,
      );
      return;
    }
    const documents = positionals.map((file) => ({
      source: basename(file),
      text: readFileSync(file, 'utf8'),
    }));
    const t0 = Date.now();
    const result = await ingestDocuments(ops, tenant, documents, {
      chunkSize: positiveInt('chunk-size', values['chunk-size']),
      chunkOverlap: positiveInt('chunk-overlap', values['chunk-overlap']),
    });
    process.stdout.write(
      `ingested ${documents.length} file(s) for ${tenant}: ${result.chunks} chunk(s) in ${values.collection} ` +
        `(${Date.now() - t0} ms); knowledge generation ${result.generation}\n`,
    );
  } finally {
    milvus.closeConnection();
    await closeAllRedis();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`ingest failed: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
