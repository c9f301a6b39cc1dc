/**
 * What retrieval-injector hands on: the chunks to the upstream (a fenced system message in the
 * body, rewritten once, and/or the gateway-owned `X-Retrieval-Context` header, set once), and
 * what the upstream and the client are told when there are none to give (a dependency down:
 * the 503, or `X-Retrieval-Status: skipped`; an integrity alarm: the 500).
 */
import { GatewayError } from '../../lib/http/errors';
import { type KongPdk } from '../../lib/pdk/kong';
import type { RequestScope } from '../../lib/request/scope';
import type { RetrievalUnavailableError } from '../../lib/retrieval/errors';
import type { RetrievedChunk } from '../../lib/retrieval/knowledge-store';
import { knowledgeNamespace } from '../../lib/retrieval/namespace';
import type { TenantContext } from '../../lib/tenant/context';
import { RETRIEVAL_CONTEXT_HEADER } from '../../lib/tenant/headers';
import { insertSystemMessage, mergeSystemMessage, type ChatBody } from './chat';
import { newFenceMarker, renderContextHeader, renderSystemMessage } from './context';
import * as metrics from './metrics';
import type { RetrievalInjectorConfig } from './schema';

/** Said to the upstream and the client when a request proceeds without context. */
export const RETRIEVAL_STATUS_HEADER = 'x-retrieval-status';

export const INTEGRITY = new GatewayError({
  status: 500,
  type: 'server_error',
  code: 'retrieval_integrity',
  message: 'retrieval returned knowledge that failed its integrity checks; the request was refused',
});

/** Hands the chunks on: body rewritten once, header set once. */
export async function deliver(
  config: RetrievalInjectorConfig,
  kong: KongPdk,
  scope: RequestScope,
  ctx: TenantContext,
  body: ChatBody,
  chunks: readonly RetrievedChunk[],
): Promise<void> {
  const namespace = knowledgeNamespace(ctx);
  const mode = config.inject;
  if (mode === 'header' || mode === 'both') {
    const value = renderContextHeader(namespace, chunks, config.header_max_bytes);
    if (value !== null)
      await kong.service.request.setHeaders({ [RETRIEVAL_CONTEXT_HEADER]: value });
  }
  if (mode !== 'header') {
    const message = renderSystemMessage(config.template, namespace, chunks, newFenceMarker());
    const place = mode === 'merged_system_message' ? mergeSystemMessage : insertSystemMessage;
    await scope.setBody(kong, JSON.stringify(place(body, message)));
  }
}

export async function unavailable(
  config: RetrievalInjectorConfig,
  kong: KongPdk,
  e: RetrievalUnavailableError,
  tenant: string,
): Promise<void> {
  metrics.unavailable.inc({ tenant, dependency: e.dependency });
  void kong.log.err(`retrieval-injector: ${e.dependency} unavailable: ${e.message}`);
  if (config.on_unavailable === 'refuse') {
    metrics.searches.inc({ tenant, outcome: 'refused' });
    throw new GatewayError({
      status: 503,
      type: 'service_unavailable',
      code: 'retrieval_unavailable',
      message: 'the knowledge service is unavailable; try again later',
      retryAfterSeconds: config.retry_after_seconds,
    });
  }
  metrics.searches.inc({ tenant, outcome: 'skipped' });
  metrics.skipped.inc({ tenant, dependency: e.dependency });
  await kong.service.request.setHeaders({ [RETRIEVAL_STATUS_HEADER]: 'skipped' });
  await kong.response.setHeader(RETRIEVAL_STATUS_HEADER, 'skipped');
  await kong.log.setSerializeValue('retrieval', { status: 'skipped', dependency: e.dependency });
}
