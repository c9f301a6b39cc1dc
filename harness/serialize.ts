// kong.log.serialize() (kong/pdk/log.lua 3.9.3 serialize): the subset of fields the harness knows,
// with kong.log.set_serialize_value keys applied (dotted keys create nested tables).
import { headerMapToObject } from './headers';
import type { RequestState } from './request-state';

function setPath(obj: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  let cur = obj;
  for (const p of parts.slice(0, -1)) {
    const next = cur[p];
    if (typeof next !== 'object' || next === null) cur[p] = {};
    cur = cur[p] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1] as string] = value;
}

export function buildSerialize(st: RequestState): Record<string, unknown> {
  const now = Date.now();
  const out: Record<string, unknown> = {
    request: {
      id: st.id,
      method: st.method,
      uri: st.rawPath + (st.rawQuery ? `?${st.rawQuery}` : ''),
      url: `http://${st.headers.get('host')?.[0] ?? ''}${st.rawPath}${st.rawQuery ? `?${st.rawQuery}` : ''}`,
      size: st.body.length,
      headers: headerMapToObject(st.headers),
    },
    upstream_uri: st.upstream
      ? st.upstream.path + (st.upstream.query ? `?${st.upstream.query}` : '')
      : undefined,
    response: st.response
      ? {
          status: st.response.status,
          headers: headerMapToObject(st.response.headers),
          size: st.response.body.length,
        }
      : undefined,
    route: st.route,
    service: st.service,
    consumer: st.consumer,
    latencies: {
      kong: st.proxyLatency ?? now - st.startTime,
      proxy: st.upstreamLatency ?? -1,
      request: now - st.startTime,
    },
    client_ip: st.clientIp,
    started_at: st.startTime,
    source: st.unexpected ? 'error' : st.exited ? 'exit' : st.proxied ? 'service' : 'error',
  };
  for (const [k, v] of Object.entries(st.serializeValues)) setPath(out, k, v);
  return JSON.parse(JSON.stringify(out)) as Record<string, unknown>;
}
