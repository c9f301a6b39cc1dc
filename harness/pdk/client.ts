// kong.client.* (kong/pdk/client.lua 3.9.3).
import type { RequestState } from '../request-state';
import {
  KongLuaError,
  checkPhase,
  luaType,
  requireRequestContext,
  throughLua,
  type PdkFn,
} from './core';

const AUTH_PHASES = ['access', 'header_filter', 'response', 'body_filter', 'log'] as const;

export const clientPdk: Record<string, PdkFn> = {
  'kong.client.get_ip': (st) => (requireRequestContext(st), st.clientIp),
  // trusted_ips = NONE (kong_defaults.lua): the forwarded IP is the connecting address
  'kong.client.get_forwarded_ip': (st) => (requireRequestContext(st), st.clientIp),
  'kong.client.get_port': (st) => (requireRequestContext(st), st.clientPort),
  'kong.client.get_forwarded_port': (st) => (requireRequestContext(st), st.clientPort),
  'kong.client.get_protocol': (st) => {
    requireRequestContext(st);
    checkPhase(st, ['access', 'header_filter', 'response', 'body_filter', 'log']);
    return 'http';
  },
  'kong.client.get_consumer': (st) => {
    checkPhase(st, AUTH_PHASES);
    return st.consumer ?? null;
  },
  'kong.client.get_credential': (st) => {
    checkPhase(st, AUTH_PHASES);
    return st.credential ?? null;
  },
  'kong.client.authenticate': (st: RequestState, [consumer, credential]) => {
    checkPhase(st, ['access']);
    const c = consumer === null || consumer === undefined ? undefined : consumer;
    const cr = credential === null || credential === undefined ? undefined : credential;
    if (c !== undefined && luaType(c) !== 'table')
      throw new KongLuaError('consumer must be a table or nil');
    if (cr !== undefined && luaType(cr) !== 'table')
      throw new KongLuaError('credential must be a table or nil');
    if (c === undefined && cr === undefined)
      throw new KongLuaError('either credential or consumer must be provided');
    st.consumer = c === undefined ? undefined : (throughLua(c) as Record<string, unknown>);
    st.credential = cr === undefined ? undefined : (throughLua(cr) as Record<string, unknown>);
    return null;
  },
  'kong.client.load_consumer': (st, [idOrName, byUsername], env) => {
    checkPhase(st, ['access', 'header_filter', 'response', 'body_filter', 'log']);
    const key = String(idOrName);
    return (
      env.config.consumers.find(
        (c) => c.id === key || (byUsername === true && c.username === key),
      ) ?? null
    );
  },
};
