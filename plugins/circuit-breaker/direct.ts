/** Points an admitted request at its chosen upstream: PDK writes only where something changes. */
import type { KongPdk } from '../../lib/pdk/kong';
import type { RequestScope } from '../../lib/request/scope';
import type { Chosen } from './in-flight';
import { FALLBACK_HEADER, FALLBACK_MODEL_HEADER, bodyTooLarge } from './refusals';

/** Points the request at its target: PDK writes only where something changes. */
export async function direct(
  kong: KongPdk,
  scope: RequestScope,
  chosen: Chosen,
  fallbackModel: string | null,
  maxBodyBytes: number,
): Promise<void> {
  const t = chosen.target;
  if (t.direct) await kong.service.setTarget(t.host, t.port);
  if (t.path !== null) await kong.service.request.setPath(t.path);
  const model = chosen.fallbackFrom !== null ? (fallbackModel ?? t.model) : t.model;
  if (model !== null) await writeModel(kong, scope, model, maxBodyBytes);
  if (chosen.fallbackFrom !== null) {
    await kong.response.setHeaders({
      [FALLBACK_HEADER]: t.label,
      ...(model !== null ? { [FALLBACK_MODEL_HEADER]: model } : {}),
    });
  }
}

/** Writes `model` into a JSON object body; other bodies go through unchanged. */
async function writeModel(
  kong: KongPdk,
  scope: RequestScope,
  model: string,
  max: number,
): Promise<void> {
  const bytes = await scope.rawBody(kong, max);
  if (bytes === null) throw bodyTooLarge(max);
  if (bytes.length === 0) return;
  const body = scope.json(bytes);
  if (!body || typeof body !== 'object' || Array.isArray(body)) return;
  const obj = body as Record<string, unknown>;
  if (obj.model === model) return;
  // A copy: the parsed body is the scope's, read by the plugins before us.
  await scope.setBody(kong, JSON.stringify({ ...obj, model }));
}
