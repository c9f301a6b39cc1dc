// PDK dispatch: method name -> implementation. Methods missing here are answered with StepError
// naming the method (the harness's rule: never a hang), see docs/harness.md.
import { clientPdk } from './client';
import { KongLuaError, NotImplementedError, type PdkFn } from './core';
import { miscPdk } from './misc';
import { MSGPACK_NIL_BODY, requestPdk } from './request';
import { responsePdk } from './response';
import { servicePdk } from './service';

const TABLE: Record<string, PdkFn> = {
  ...requestPdk,
  ...clientPdk,
  ...servicePdk,
  ...responsePdk,
  ...miscPdk,
};

/**
 * `kong.ctx.shared.kta_pdk.run` (lib/pluginserver/pdk-batch.lua, installed by kong.yml's
 * pre-function): Kong's mp_rpc.lua resolves a method name through the `kong` table, so the
 * snippet's function is callable like any PDK method while the request's `kong.ctx.shared`
 * holds it. It runs each call in order as the same call alone would (an exit or a Lua error
 * ends the phase there) and answers one `{ v }` per call (`{}` for nil, `{ b = base64 }` for
 * a raw body; `{ e }` for a read fetched ahead that failed). Without the snippet's table Kong logs "could not find pdk method" and answers
 * nil, having run nothing; so does the harness.
 */
const BATCH_METHOD = 'kong.ctx.shared.kta_pdk.run';
const BINARY = new Set([
  'kong.request.get_raw_body',
  'kong.response.get_raw_body',
  'kong.service.response.get_raw_body',
]);
const LUA_NIL_BODY = new Set(['kong.request.get_raw_body']);
const LOGGED = new Set([
  'kong.response.get_status',
  'kong.response.get_headers',
  'kong.response.get_source',
]);

TABLE[BATCH_METHOD] = (st, [calls], env) => {
  if (!st.ctxShared.has('kta_pdk')) {
    env.log(`[kong] error could not find pdk method: ${BATCH_METHOD}`);
    return null;
  }
  const out: unknown[] = [];
  for (const c of Array.isArray(calls) ? (calls as unknown[]) : []) {
    const [method, args, n, ahead] = c as [
      string,
      unknown[] | undefined,
      number | undefined,
      boolean?,
    ];
    const a = (args ?? []).slice(0, n ?? 0);
    // In the log timer the snippet answers these from ctx.shared.kta_log, which kong.yml's
    // pre-function log snippet saves; the harness runs no pre-function log, so: not here.
    if (LOGGED.has(method) && st.inLogTimer) {
      out.push({ x: true });
      continue;
    }
    let v: unknown;
    try {
      v = findPdkMethod(method)(st, a, env);
    } catch (e) {
      // A read fetched ahead: the snippet pcalls it and returns the error.
      if (ahead === true && (e instanceof KongLuaError || e instanceof NotImplementedError)) {
        out.push({ e: e.message });
        continue;
      }
      // The snippet calls the Lua function itself: a nil body is nil there, not the packing
      // error the call alone meets in mp_rpc.lua (harness/pdk/request.ts).
      if (!(
        LUA_NIL_BODY.has(method) &&
        e instanceof KongLuaError &&
        e.message === MSGPACK_NIL_BODY
      ))
        throw e;
      v = null;
    }
    if (v === null || v === undefined) out.push({});
    else if (BINARY.has(method) && (typeof v === 'string' || v instanceof Uint8Array))
      out.push({ b: Buffer.from(v as Uint8Array).toString('base64') });
    else out.push({ v });
  }
  return out;
};

/**
 * The snippet's `chain` and `unchain` (lib/pluginserver/chain-access.ts): they merge plugins'
 * access phases through what Kong keeps in `ngx.ctx.plugins`, which the harness does not have;
 * the snippet answers nil there, and every plugin runs its own phase.
 */
TABLE['kong.ctx.shared.kta_pdk.chain'] = () => null;
TABLE['kong.ctx.shared.kta_pdk.unchain'] = () => null;

export function findPdkMethod(method: string): PdkFn {
  const fn = TABLE[method];
  if (!fn)
    throw new NotImplementedError(
      `harness: PDK method ${method} is not implemented by the Kong 3.9 harness`,
    );
  return fn;
}

/** mp_rpc.lua get_step_method: typed Step methods for entity results. */
const STEP_METHODS: Record<string, string> = {
  'kong.client.get_credential': 'plugin.StepCredential',
  'kong.client.load_consumer': 'plugin.StepConsumer',
  'kong.client.get_consumer': 'plugin.StepConsumer',
  'kong.client.authenticate': 'plugin.StepCredential',
  'kong.node.get_memory_stats': 'plugin.StepMemoryStats',
  'kong.router.get_route': 'plugin.StepRoute',
  'kong.router.get_service': 'plugin.StepService',
  'kong.request.get_query': 'plugin.StepMultiMap',
  'kong.request.get_headers': 'plugin.StepMultiMap',
  'kong.response.get_headers': 'plugin.StepMultiMap',
  'kong.service.response.get_headers': 'plugin.StepMultiMap',
};

export const stepMethodFor = (method: string): string => STEP_METHODS[method] ?? 'plugin.Step';
export { ExitSignal, KongLuaError, NotImplementedError, type PdkEnv } from './core';
