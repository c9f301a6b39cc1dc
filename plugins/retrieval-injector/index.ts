/**
 * retrieval-injector: each tenant's own knowledge from Milvus, fenced, asserted, never
 * another's. Reads the TenantContext once (refuses without it), takes the query from the
 * chat body, retrieves with `retrieve(ctx, query, k)` (filter from the context's knowledge
 * namespace, assembly assertion, per-tenant decryption) and hands the chunks to the upstream
 * as a fenced system message and/or the gateway-owned `X-Retrieval-Context` header.
 *
 * Its PDK calls per request are stated once, in the README ("PDK calls per phase"); the chain
 * benchmark counts them on the real Kong (docs/benchmarks.md, "The chain").
 * No log phase, no response phase.
 */
import { GatewayError } from '../../lib/http/errors';
import { type TenantLabels } from '../../lib/metrics/registry';
import { type KongPdk } from '../../lib/pdk/kong';
import { definePlugin, startUpOf } from '../../lib/plugin/define';
import { ChunkCipher, loadKnowledgeSecret } from '../../lib/retrieval/chunk-cipher';
import { isRetrievalIntegrityError, isRetrievalUnavailableError } from '../../lib/retrieval/errors';
import type { RetrievedChunk } from '../../lib/retrieval/knowledge-store';
import { readConfig } from '../../lib/schema/config';
import type { TenantContext } from '../../lib/tenant/context';
import { readRequest } from '../../lib/tenant/read';
import type { RequestScope } from '../../lib/request/scope';
import { extractQuery, parseChatBody } from './chat';
import { INTEGRITY, deliver, unavailable } from './deliver';
import * as metrics from './metrics';
import { retrieverFor } from './runtime';
import { Schema, checkConfig, type RetrievalInjectorConfig } from './schema';

/** A ready instance: its config and the cipher of its tenants' knowledge. */
interface Ready {
  readonly config: RetrievalInjectorConfig;
  readonly cipher: ChunkCipher;
}

const NAME = 'retrieval-injector';

export const { Name, Version, Priority, Plugin } = definePlugin<Ready>({
  name: NAME,
  version: '0.1.0',
  /**
   * After token-meter (800), and before Kong's own AI plugins (ai-request-transformer 777,
   * ai-prompt-decorator 772, ai-prompt-guard 771, ai-proxy 770): its system message is written
   * in OpenAI's format, which ai-proxy then converts to the provider's (Anthropic's `system`).
   * After ai-proxy it would overwrite the converted body (docs/operations.md, "Beside Kong's AI
   * plugins").
   */
  priority: 790,
  schema: Schema,
  // KnowledgeSecretError messages name where the secret was looked for, never the secret.
  startUp: (raw) =>
    startUpOf(() => {
      const config = readConfig(Schema, raw);
      checkConfig(config);
      const cipher = new ChunkCipher(
        loadKnowledgeSecret({
          file: config.encryption.secret_file,
          env: config.encryption.secret_env,
        }),
      );
      return { config, cipher };
    }),
  metricsAt: (r) => ({ port: r.config.metrics_port, host: r.config.metrics_host }),
  async access(ready, kong) {
    const { tenant: ctx, scope } = await readRequest(kong, NAME);
    await inject(ready, kong, scope, ctx, metrics.tenantLabels(ready.config.metrics_max_tenants));
  },
  onRefusal: (e) => metrics.refusals.inc({ reason: e.code, status: String(e.status) }),
});
export { Schema };

function planSettings(
  config: RetrievalInjectorConfig,
  plan: string,
): { topK: number; minScore: number } {
  const p = Object.prototype.hasOwnProperty.call(config.plans, plan)
    ? config.plans[plan]
    : undefined;
  return {
    topK: p?.top_k ?? config.default_top_k,
    minScore: p?.min_score ?? config.default_min_score,
  };
}

async function inject(
  ready: Ready,
  kong: KongPdk,
  scope: RequestScope,
  ctx: TenantContext,
  labels: TenantLabels,
): Promise<void> {
  const { config, cipher } = ready;
  const { topK, minScore } = planSettings(config, ctx.plan);
  if (topK === 0) return;
  const raw = (await scope.rawBody(kong, 0)) ?? Buffer.alloc(0);
  if (raw.length > config.max_body_bytes) {
    throw new GatewayError({
      status: 413,
      type: 'invalid_request_error',
      code: 'request_too_large',
      message: `request bodies over ${config.max_body_bytes} bytes are refused`,
    });
  }
  const body = parseChatBody(raw, (b) => scope.json(b));
  if (!body) return;
  const query = extractQuery(body, config.query_source, config.query_max_chars);
  if (query.length === 0) return;

  const tenant = labels.label(ctx.tenantId);
  const stop = metrics.searchSeconds.startTimer({ tenant });
  let chunks: readonly RetrievedChunk[];
  try {
    const retriever = await retrieverFor(config, cipher);
    const found = await retriever.retrieve(ctx, query, topK, { minScore });
    metrics.embeddingCache.inc({ result: found.cache });
    chunks = found.chunks;
  } catch (e) {
    if (isRetrievalIntegrityError(e)) {
      metrics.assertionAlarms.inc({ tenant, kind: e.kind });
      metrics.searches.inc({ tenant, outcome: 'integrity' });
      void kong.log.err(
        `retrieval-injector ALARM (${e.kind}) for tenant ${ctx.tenantId}, namespace ${ctx.policy.knowledgeNamespace}: ${e.message}`,
      );
      throw INTEGRITY;
    }
    if (isRetrievalUnavailableError(e)) return unavailable(config, kong, e, tenant);
    throw e;
  } finally {
    stop();
  }

  if (chunks.length === 0) {
    metrics.searches.inc({ tenant, outcome: 'empty' });
    metrics.emptyResults.inc({ tenant });
    await kong.log.setSerializeValue('retrieval', { status: 'empty', chunks: 0 });
    return;
  }
  metrics.searches.inc({ tenant, outcome: 'hits' });
  metrics.hits.inc({ tenant }, chunks.length);
  await deliver(config, kong, scope, ctx, body, chunks);
  await kong.log.setSerializeValue('retrieval', {
    status: 'injected',
    chunks: chunks.length,
    sources: chunks.map((c) => c.source),
  });
}
