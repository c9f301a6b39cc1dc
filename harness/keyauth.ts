// Kong's bundled key-auth plugin, mirrored from kong/plugins/key-auth/handler.lua and
// schema.lua (3.9.3). PRIORITY 1250, access phase only, consumer scope not allowed (no_consumer).
import { searchRemove } from './pdk/service';
import type { FieldList } from './config/schema';
import type { DeclarativeConfig } from './config/entities';
import { normalizeHeaderName } from './headers';
import { ExitSignal, KongLuaError } from './pdk/core';
import { requestPdk, parseQuery } from './pdk/request';
import { responsePdk } from './pdk/response';
import type { PdkEnv } from './pdk/core';
import type { RequestState } from './request-state';

export const KEY_AUTH_PRIORITY = 1250;

export const keyAuthConfigFields: FieldList = [
  {
    key_names: {
      type: 'array',
      required: true,
      elements: { type: 'string', match: '^[A-Za-z0-9_-]+$' },
      default: ['apikey'],
    },
  },
  { hide_credentials: { type: 'boolean', required: true, default: false } },
  { anonymous: { type: 'string' } },
  { key_in_header: { type: 'boolean', required: true, default: true } },
  { key_in_query: { type: 'boolean', required: true, default: true } },
  { key_in_body: { type: 'boolean', required: true, default: false } },
  { run_on_preflight: { type: 'boolean', required: true, default: true } },
  { realm: { type: 'string', required: false } },
];

interface KeyAuthConf {
  key_names: string[];
  hide_credentials: boolean;
  anonymous?: string;
  key_in_header: boolean;
  key_in_query: boolean;
  key_in_body: boolean;
  run_on_preflight: boolean;
  realm?: string;
}

type Failure = { status: number; message: string; headers?: Record<string, string> };

function setConsumer(
  st: RequestState,
  cfg: DeclarativeConfig,
  consumerId: string | undefined,
  credentialId?: string,
): void {
  const consumer = consumerId ? cfg.consumers.find((c) => c.id === consumerId) : undefined;
  const credential = credentialId
    ? cfg.keyauthCredentials.find((c) => c.id === credentialId)
    : undefined;
  // kong.client.authenticate(consumer, credential)
  st.consumer = consumer;
  st.credential = credential;
  const h = st.upstream.headers;
  const set = (n: string, v: string | undefined) => (v === undefined ? h.delete(n) : h.set(n, [v]));
  set('x-consumer-id', consumer?.id);
  set('x-consumer-custom-id', consumer?.custom_id);
  set('x-consumer-username', consumer?.username);
  set('x-credential-identifier', credential?.id);
  set('x-anonymous-consumer', credential ? undefined : 'true');
}

function doAuthentication(
  st: RequestState,
  conf: KeyAuthConf,
  cfg: DeclarativeConfig,
  env: PdkEnv,
): true | Failure {
  const wwwAuth = conf.realm !== undefined ? `Key realm="${conf.realm}"` : 'Key';
  const unauthorized = (message: string): Failure => ({
    status: 401,
    message,
    headers: { 'WWW-Authenticate': wwwAuth },
  });
  // kong.request.get_headers() / get_query(): the request as earlier plugins left it
  // (ngx.req headers and var.args), not the client's original.
  const query = parseQuery(st.upstream.query);
  let body: Record<string, unknown> | undefined;
  const getBody = () =>
    (body ??=
      (requestPdk['kong.request.get_body']?.(st, [], env) as Record<string, unknown> | null) ?? {});
  let key: string | undefined;
  for (const name of conf.key_names) {
    let v: unknown;
    if (conf.key_in_header) {
      const vs = st.upstream.headers.get(normalizeHeaderName(name));
      v = vs === undefined ? undefined : vs.length === 1 ? vs[0] : vs;
    }
    if (v === undefined && conf.key_in_query) {
      const qs = query.get(name);
      v = qs === undefined ? undefined : qs.length === 1 ? qs[0] : qs;
    }
    if (v === undefined && conf.key_in_body) v = getBody()[name];
    if (typeof v === 'string') {
      key = v;
      if (conf.hide_credentials) {
        // kong.service.request.clear_query_arg (resty.ada.search.remove): re-encodes the query.
        st.upstream.query = searchRemove(st.upstream.query, name);
        st.upstream.headers.delete(normalizeHeaderName(name));
        if (conf.key_in_body) {
          const b = getBody();
          if (Object.keys(b).length > 0) {
            delete b[name];
            const ct = st.upstream.headers.get('content-type')?.[0] ?? 'application/json';
            const enc = ct.includes('json')
              ? JSON.stringify(b)
              : new URLSearchParams(b as Record<string, string>).toString();
            st.upstream.body = Buffer.from(enc);
            st.bodyReplaced = true;
            st.upstream.headers.set('content-length', [String(st.upstream.body.length)]);
          }
        }
      }
      break;
    } else if (Array.isArray(v)) {
      return unauthorized('Duplicate API key found');
    }
  }
  if (!key) return unauthorized('No API key found in request');
  const cred = cfg.keyauthCredentials.find((c) => c.key === key);
  if (!cred) return unauthorized('Unauthorized');
  setConsumer(st, cfg, cred.consumer.id, cred.id);
  return true;
}

/** KeyAuthHandler:access. Throws ExitSignal after kong.response.error, like the Lua handler. */
export function keyAuthAccess(
  st: RequestState,
  rawConf: Record<string, unknown>,
  cfg: DeclarativeConfig,
  env: PdkEnv,
): void {
  const conf = rawConf as unknown as KeyAuthConf;
  if (!conf.run_on_preflight && st.method === 'OPTIONS') return;
  if (conf.anonymous !== undefined) {
    // logical_OR_authentication
    if (st.credential) return;
    const ok = doAuthentication(st, conf, cfg, env);
    if (ok !== true) {
      const anon = cfg.consumers.find(
        (c) => c.id === conf.anonymous || c.username === conf.anonymous,
      );
      // set_consumer(nil) -> kong.client.authenticate(nil, nil) raises in Kong 3.9.3
      if (!anon) throw new KongLuaError('either credential or consumer must be provided');
      setConsumer(st, cfg, anon.id);
    }
    return;
  }
  const ok = doAuthentication(st, conf, cfg, env);
  if (ok !== true) {
    responsePdk['kong.response.error']?.(st, [ok.status, ok.message, ok.headers], env);
    throw new ExitSignal('unreachable');
  }
}
