// kong.log.serialize() (kong/pdk/log.lua 3.9.3 serialize, http subsystem): the fields the
// harness knows, then ctx.serialize_values applied by edit_result.
import { headerMapToObject } from './headers';
import { KongLuaError } from './pdk/core';
import { parseQuery, truncateHeaders } from './pdk/request';
import type { RequestState } from './request-state';

type Table = Record<string, unknown>;
const isTable = (v: unknown): v is Table => typeof v === 'object' && v !== null;

/** edit_result of kong/pdk/log.lua (3.9.3): dotted keys walk/create sub-tables; nil deletes. */
function editResult(root: Table, items: RequestState['serializeValues']): Table {
  for (const { key, value, mode } of items) {
    const parts = key.split('.');
    const last = parts.pop() as string;
    let node: Table | undefined = root;
    for (const sub of parts) {
      const next: unknown = node[sub];
      if (next === undefined || next === null) {
        if (mode === 'replace') {
          node = undefined; // a missing link: nothing to replace
          break;
        }
        node[sub] = {};
      } else if (!isTable(next)) {
        throw new KongLuaError(
          `The key '${key}' could not be used as a serialize value. Subkey '${sub}' is not a table. It's ${String(next)}`,
        );
      }
      node = node[sub] as Table;
    }
    if (!node) continue;
    const existing = node[last];
    const present = existing !== undefined && existing !== null;
    if (mode === 'set' || (mode === 'add' && !present) || (mode === 'replace' && present)) {
      if (value === null || value === undefined) delete node[last];
      else node[last] = value;
    }
  }
  return root;
}

function queryTable(raw: string): Table {
  const out: Table = {};
  for (const [k, vs] of parseQuery(raw)) out[k] = vs.length === 1 ? vs[0] : vs;
  return out;
}

export function buildSerialize(st: RequestState): Table {
  const now = Date.now();
  const requestUri = st.rawPath + (st.rawQuery !== undefined ? `?${st.rawQuery}` : '');
  // kong.request.get_headers(): the request headers as plugins left them (default limit 100),
  // with Authorization / Proxy-Authorization redacted.
  const headers: Table = headerMapToObject(truncateHeaders(st.upstream.headers, 100));
  for (const h of ['authorization', 'proxy-authorization'])
    if (headers[h] !== undefined) headers[h] = 'REDACTED';
  const credential = st.credential as Table | undefined;
  const out: Table = {
    request: {
      id: st.id,
      uri: requestUri,
      url: `http://${st.host}:${st.serverPort}${requestUri}`,
      querystring: queryTable(st.upstream.query),
      method: st.upstream.method,
      headers,
      size: st.body.length,
    },
    // var.upstream_uri is set once a route matched (runloop access.before)
    upstream_uri: st.route
      ? st.upstream.path + (st.upstream.query ? `?${st.upstream.query}` : '')
      : '',
    upstream_status: st.serviceResponse ? String(st.serviceResponse.status) : '',
    response: st.response
      ? {
          status: st.response.status,
          headers: headerMapToObject(st.response.headers),
          size: st.response.body.length,
        }
      : undefined,
    latencies: {
      kong: st.proxyLatency ?? now - st.startTime,
      proxy: st.upstreamLatency ?? -1,
      request: now - st.startTime,
      receive: 0,
    },
    // build_authenticated_entity reads credential.consumer_id, else ctx.authenticate_consumer
    // (sic, a field nobody sets): key-auth credentials carry consumer = {id}, so no consumer_id.
    authenticated_entity: credential
      ? { id: credential.id, consumer_id: credential.consumer_id }
      : undefined,
    route: st.route,
    service: st.service,
    consumer: st.consumer,
    client_ip: st.clientIp,
    started_at: st.startTime,
    // TYPE_NAMES[kong.response.get_source(ctx)], kong/constants.lua (3.9.3) RESPONSE_SOURCE.NAMES:
    // error and exit both read "kong", service reads "upstream".
    source: !st.unexpected && !st.exited && st.proxied ? 'upstream' : 'kong',
    workspace: '00000000-0000-4000-8000-000000000000',
    workspace_name: 'default',
  };
  // JSON round trip first: the table as cjson would encode it (no undefined entries).
  return editResult(JSON.parse(JSON.stringify(out)) as Table, st.serializeValues);
}
