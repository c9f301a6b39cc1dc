// Response headers Kong adds: kong/runloop/handler.lua (3.9.3) header_filter.after, names from
// kong/constants.lua (3.9.3); enabled by default: headers = server_tokens, latency_tokens,
// x-kong-request-id (kong/templates/kong_defaults.lua).
import type { HeaderMap } from './headers';
import type { RequestState } from './request-state';

export const KONG_VERSION = '3.9.3';
export const KONG_SERVER = `kong/${KONG_VERSION}`; // meta._SERVER_TOKENS

export function addKongResponseHeaders(st: RequestState, headers: HeaderMap): void {
  // header_filter.after branches on ctx.KONG_PROXIED alone: it is set before the proxy, so a
  // response-phase exit or error (KONG_EXITED / KONG_UNEXPECTED after proxying) still gets
  // the upstream/proxy latency headers and Via, not X-Kong-Response-Latency.
  if (st.proxied) {
    headers.set('x-kong-upstream-latency', [String(Math.round(st.upstreamLatency ?? 0))]);
    headers.set('x-kong-proxy-latency', [String(Math.round(st.proxyLatency ?? 0))]);
    const via = headers.get('via');
    const outbound = `1.1 ${KONG_SERVER}`;
    headers.set('via', [via ? `${via.join(', ')}, ${outbound}` : outbound]);
    if (!headers.has('server')) headers.set('server', [KONG_SERVER]);
  } else {
    headers.set('x-kong-response-latency', [String(Math.round(Date.now() - st.startTime))]);
    if (headers.get('via')?.[0] !== KONG_SERVER) headers.set('server', [KONG_SERVER]);
  }
  headers.set('x-kong-request-id', [st.id]);
}
