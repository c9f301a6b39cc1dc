// kong.ctx.shared, kong.nginx, kong.log, kong.router, kong.node: kong/pdk/{ctx,nginx,log,router,node}.lua
// and the exposed_api overrides of kong/runloop/plugin_servers/plugin.lua (3.9.3).
import { hostname } from 'node:os';
import { buildSerialize } from '../serialize';
import {
  KongLuaError,
  REQUEST_PHASES,
  checkPhase,
  requireRequestContext,
  throughLua,
  type PdkFn,
} from './core';

const LOG_LEVELS = ['debug', 'info', 'notice', 'warn', 'err', 'crit', 'alert', 'emerg'] as const;

function logLine(args: unknown[]): string {
  return args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join('');
}

export const miscPdk: Record<string, PdkFn> = {
  'kong.ctx.shared.get': (st, [k]) =>
    st.ctxShared.has(String(k)) ? st.ctxShared.get(String(k)) : null,
  'kong.ctx.shared.set': (st, [k, v]) => {
    if (v === null || v === undefined) st.ctxShared.delete(String(k));
    else st.ctxShared.set(String(k), throughLua(v));
    return null;
  },
  'kong.nginx.get_ctx': (st, [k]) => (st.ngxCtx.has(String(k)) ? st.ngxCtx.get(String(k)) : null),
  'kong.nginx.set_ctx': (st, [k, v]) => {
    if (v === null || v === undefined) st.ngxCtx.delete(String(k));
    else st.ngxCtx.set(String(k), throughLua(v));
    return null;
  },
  // kong/runloop/plugin_servers/plugin.lua (3.9.3) exposed_api: `return ngx_var[v]`, which
  // raises in the log timer. Only the variables plugins read are emulated; others are nil.
  'kong.nginx.get_var': (st, [name]) => {
    requireRequestContext(st);
    if (name === 'kong_request_id') return st.id;
    if (name === 'upstream_uri')
      return st.upstream.path + (st.upstream.query ? `?${st.upstream.query}` : '');
    if (name === 'remote_addr') return st.clientIp;
    return null;
  },
  'kong.nginx.get_subsystem': () => 'http',
  'kong.nginx.req_start_time': (st) => st.startTime / 1000,
  'kong.router.get_route': (st) => {
    checkPhase(st, ['access', 'header_filter', 'response', 'body_filter', 'log']);
    return st.route ?? null;
  },
  'kong.router.get_service': (st) => {
    checkPhase(st, ['access', 'header_filter', 'response', 'body_filter', 'log']);
    return st.service ?? null;
  },
  'kong.node.get_id': (_st, _a, env) => env.nodeId,
  'kong.node.get_hostname': () => hostname(),
  'kong.log.serialize': (st) => {
    checkPhase(st, ['log']);
    // plugin.lua: cjson_encode(saved.serialize_data or kong.log.serialize()) -> a JSON string
    return JSON.stringify(st.savedSerialize ?? buildSerialize(st));
  },
  'kong.log.set_serialize_value': (st, [key, value, options]) => {
    checkPhase(st, REQUEST_PHASES);
    if (typeof key !== 'string') throw new KongLuaError('key must be a string');
    const mode = (options as { mode?: string } | null | undefined)?.mode ?? 'set';
    if (mode !== 'set' && mode !== 'add' && mode !== 'replace')
      throw new KongLuaError(`mode must be 'set', 'add' or 'replace'`);
    // kong/pdk/log.lua (3.9.3): only recorded here; serialize() applies the list in order,
    // judging add/replace against the serialized table (so 'replace' works on Kong's own
    // fields such as request.id, and nil deletes).
    st.serializeValues.push({ key, value: throughLua(value), mode });
    return null;
  },
};

for (const level of LOG_LEVELS) {
  miscPdk[`kong.log.${level}`] = (st, args, env) => {
    env.log(`[kong] ${level} [${env.pluginName}] ${logLine(args)}`);
    return null;
  };
}
miscPdk['kong.log'] = miscPdk['kong.log.notice'] as PdkFn;
