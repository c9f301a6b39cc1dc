/**
 * retrieval-injector: each tenant's own knowledge from Milvus, fenced, asserted, never
 * another's. Reads the TenantContext once (refuses without it), takes the query from the
 * chat body, retrieves with `retrieve(ctx, query, k)` (filter from the context's knowledge
 * namespace, assembly assertion, per-tenant decryption) and hands the chunks to the upstream
 * as a fenced system message and/or the gateway-owned `X-Retrieval-Context` header.
 *
 * PDK calls on the access path (each one IPC round trip with Kong):
 *   ctx.shared.get (TenantContext)                                             = 1
 *   + request.getRawBody(0) when the plan retrieves (top_k > 0)                 = 2
 *   + with hits: service.request.setRawBody (system_message) and/or
 *     service.request.setHeaders (header), then log.setSerializeValue         = 4 (5 with both)
 *   without hits: log.setSerializeValue                                       = 3
 *   skipped (dependency down, on_unavailable=skip): service.request.setHeaders,
 *     response.setHeader, log.setSerializeValue                                = 5
 *   refusal: response.exit                                                     = 3
 * No log phase, no response phase.
 */
import { GatewayError } from '../../lib/http/errors';
import { serveMetrics, type TenantLabels } from '../../lib/metrics/registry';
import { type KongPdk } from '../../lib/pdk/kong';
import { guardPhase } from '../../lib/plugin/phase';
import { ChunkCipher, loadKnowledgeSecret } from '../../lib/retrieval/chunk-cipher';
import {
  isRetrievalIntegrityError,
  isRetrievalUnavailableError,
  type RetrievalUnavailableError,
} from '../../lib/retrieval/errors';
import type { RetrievedChunk } from '../../lib/retrieval/knowledge-store';
import { knowledgeNamespace } from '../../lib/retrieval/namespace';
import { readConfig } from '../../lib/schema/config';
import type { TenantContext } from '../../lib/tenant/context';
import { RETRIEVAL_CONTEXT_HEADER } from '../../lib/tenant/headers';
import { readRequest } from '../../lib/tenant/read';
import type { RequestScope } from '../../lib/request/scope';
import { extractQuery, insertSystemMessage, parseChatBody, type ChatBody } from './chat';
import { newFenceMarker, renderContextHeader, renderSystemMessage } from './context';
import * as metrics from './metrics';
import { retrieverFor } from './runtime';
import { Schema, checkConfig, type RetrievalInjectorConfig } from './schema';

export const Name = 'retrieval-injector';
export const Version = '0.1.0';
/** After token-meter (800), before circuit-breaker (600). */
export const Priority = 700;
export { Schema };

/** Said to the upstream and the client when a request proceeds without context. */
export const RETRIEVAL_STATUS_HEADER = 'x-retrieval-status';

const MISCONFIGURED = new GatewayError({
  status: 500,
  type: 'server_error',
  code: 'plugin_misconfigured',
  message: 'retrieval-injector is misconfigured on this route; the request was not forwarded',
});

const INTEGRITY = new GatewayError({
  status: 500,
  type: 'server_error',
  code: 'retrieval_integrity',
  message: 'retrieval returned knowledge that failed its integrity checks; the request was refused',
});

export class Plugin {
  private readonly config: RetrievalInjectorConfig;
  private readonly cipher: ChunkCipher | null = null;
  private readonly misconfigured: string | null = null;

  /** Never throws (a failed StartInstance is a bare 500 retried per request). */
  constructor(raw: unknown) {
    this.config = readConfig<RetrievalInjectorConfig>(Schema, raw);
    try {
      checkConfig(this.config);
      this.cipher = new ChunkCipher(
        loadKnowledgeSecret({
          file: this.config.encryption.secret_file,
          env: this.config.encryption.secret_env,
        }),
      );
      serveMetrics(
        'retrieval-injector',
        this.config.metrics_port,
        this.config.metrics_host,
        (e) => {
          process.stderr.write(`retrieval-injector: metrics endpoint failed: ${e.message}\n`);
        },
      );
    } catch (e) {
      // KnowledgeSecretError messages name where the secret was looked for, never the secret.
      this.misconfigured = e instanceof Error ? e.message : String(e);
    }
  }

  async access(kong: unknown): Promise<void> {
    await guardPhase(
      kong,
      Name,
      'access',
      async (k) => {
        const { tenant: ctx, scope } = await readRequest(k, Name);
        if (this.misconfigured !== null || this.cipher === null) {
          void k.log.err(`retrieval-injector is misconfigured, refusing: ${this.misconfigured}`);
          throw MISCONFIGURED;
        }
        await this.inject(
          k,
          scope,
          ctx,
          this.cipher,
          metrics.tenantLabels(this.config.metrics_max_tenants),
        );
      },
      { onRefusal: (e) => metrics.refusals.inc({ reason: e.code, status: String(e.status) }) },
    );
  }

  private planSettings(plan: string): { topK: number; minScore: number } {
    const p = Object.prototype.hasOwnProperty.call(this.config.plans, plan)
      ? this.config.plans[plan]
      : undefined;
    return {
      topK: p?.top_k ?? this.config.default_top_k,
      minScore: p?.min_score ?? this.config.default_min_score,
    };
  }

  private async inject(
    kong: KongPdk,
    scope: RequestScope,
    ctx: TenantContext,
    cipher: ChunkCipher,
    labels: TenantLabels,
  ): Promise<void> {
    const { topK, minScore } = this.planSettings(ctx.plan);
    if (topK === 0) return;
    const raw = (await scope.rawBody(kong, 0)) ?? Buffer.alloc(0);
    if (raw.length > this.config.max_body_bytes) {
      throw new GatewayError({
        status: 413,
        type: 'invalid_request_error',
        code: 'request_too_large',
        message: `request bodies over ${this.config.max_body_bytes} bytes are refused`,
      });
    }
    const body = parseChatBody(raw, (b) => scope.json(b));
    if (!body) return;
    const query = extractQuery(body, this.config.query_source, this.config.query_max_chars);
    if (query.length === 0) return;

    const tenant = labels.label(ctx.tenantId);
    const stop = metrics.searchSeconds.startTimer({ tenant });
    let chunks: readonly RetrievedChunk[];
    try {
      const retriever = await retrieverFor(this.config, cipher);
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
      if (isRetrievalUnavailableError(e)) return this.unavailable(kong, e, tenant);
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
    await this.deliver(kong, scope, ctx, body, chunks);
    await kong.log.setSerializeValue('retrieval', {
      status: 'injected',
      chunks: chunks.length,
      sources: chunks.map((c) => c.source),
    });
  }

  /** Hands the chunks on: body rewritten once, header set once. */
  private async deliver(
    kong: KongPdk,
    scope: RequestScope,
    ctx: TenantContext,
    body: ChatBody,
    chunks: readonly RetrievedChunk[],
  ): Promise<void> {
    const namespace = knowledgeNamespace(ctx);
    const mode = this.config.inject;
    if (mode === 'header' || mode === 'both') {
      const value = renderContextHeader(namespace, chunks, this.config.header_max_bytes);
      if (value !== null)
        await kong.service.request.setHeaders({ [RETRIEVAL_CONTEXT_HEADER]: value });
    }
    if (mode === 'system_message' || mode === 'both') {
      const message = renderSystemMessage(
        this.config.template,
        namespace,
        chunks,
        newFenceMarker(),
      );
      await scope.setBody(kong, JSON.stringify(insertSystemMessage(body, message)));
    }
  }

  private async unavailable(
    kong: KongPdk,
    e: RetrievalUnavailableError,
    tenant: string,
  ): Promise<void> {
    metrics.unavailable.inc({ tenant, dependency: e.dependency });
    void kong.log.err(`retrieval-injector: ${e.dependency} unavailable: ${e.message}`);
    if (this.config.on_unavailable === 'refuse') {
      metrics.searches.inc({ tenant, outcome: 'refused' });
      throw new GatewayError({
        status: 503,
        type: 'service_unavailable',
        code: 'retrieval_unavailable',
        message: 'the knowledge service is unavailable; try again later',
        retryAfterSeconds: this.config.retry_after_seconds,
      });
    }
    metrics.searches.inc({ tenant, outcome: 'skipped' });
    metrics.skipped.inc({ tenant, dependency: e.dependency });
    await kong.service.request.setHeaders({ [RETRIEVAL_STATUS_HEADER]: 'skipped' });
    await kong.response.setHeader(RETRIEVAL_STATUS_HEADER, 'skipped');
    await kong.log.setSerializeValue('retrieval', { status: 'skipped', dependency: e.dependency });
  }
}
