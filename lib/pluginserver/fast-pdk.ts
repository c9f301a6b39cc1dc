/**
 * A cost of kong-pdk 0.6.0 on every request, removed where it is cheap (loaded by harden.ts,
 * in every plugin-server process of ours; its other one, the listener's debug JSON, is
 * quiet-listener.ts):
 * every `kong.x.y` access on its PDK object goes through Proxies that convert camelCase
 * with a regular expression and allocate a new Proxy per level, per access
 * (pdk.js `bridgeHandler`). `patchHandleEvent` gives our phase handlers the typed facade
 * `KongPdk` built directly on the event's pipe: the same PDK method names, one small
 * object per namespace per event, no Proxy.
 * Test fixtures and any other plugin loaded without harden.ts keep kong-pdk's own objects. */
import path from 'node:path';
import type { HeaderValue, KongPdk } from '../pdk/kong';
import { batchedCall, endsWithExit } from './batch';
import { attachEvent, servedInstances } from './chain-access';
import { countExchange } from './exchanges';

/** kong-pdk's pipe end handed to a phase (lib/pipe.js). */
interface EventPipe {
  put(v: unknown): void;
  get(): Promise<[unknown, unknown]>;
}

type Call = (method: string, ...args: unknown[]) => Promise<unknown>;

export class PdkCallError extends Error {
  override readonly name = 'PDKError';
}

/**
 * The event's PDK call, as pdk.js `rpcCall` makes it, one at a time: the pipe carries one call
 * and its answer, so a call made while another waits goes after it (the chain's log phase runs
 * its plugins' work side by side, lib/request/chain-log.ts).
 */
export function pipeCall(pipe: EventPipe): Call {
  const one: Call = async (method, ...args) => {
    pipe.put({ Method: method, Args: args });
    // Kong never steps the event again after an exit (pdk.js NON_RETURN_METHODS).
    if (endsWithExit(method, args)) return undefined;
    const [ret, err] = await pipe.get();
    if (err) throw new PdkCallError(`PDK method ${method} failed:  ${String(err)}`);
    return ret;
  };
  let busy: Promise<void> | undefined;
  return (method, ...args) => {
    const mine = busy ? busy.then(() => one(method, ...args)) : one(method, ...args);
    const settled = mine.then(
      () => undefined,
      () => undefined,
    );
    busy = settled;
    void settled.then(() => {
      if (busy === settled) busy = undefined;
    });
    return mine;
  };
}

/** The typed facade over one event's calls: every method is one PDK call of that name. */
export function fastKong(call: Call): KongPdk {
  const c = call as <T>(method: string, ...args: unknown[]) => Promise<T>;
  return {
    request: {
      getHeader: (name: string) => c('kong.request.get_header', name),
      getHeaders: (max?: number) =>
        max === undefined ? c('kong.request.get_headers') : c('kong.request.get_headers', max),
      getRawBody: (max?: number) =>
        max === undefined ? c('kong.request.get_raw_body') : c('kong.request.get_raw_body', max),
      getMethod: () => c('kong.request.get_method'),
      getPath: () => c('kong.request.get_path'),
      getPathWithQuery: () => c('kong.request.get_path_with_query'),
    },
    client: {
      getConsumer: () => c('kong.client.get_consumer'),
      getCredential: () => c('kong.client.get_credential'),
      getIp: () => c('kong.client.get_ip'),
    },
    router: {
      getRoute: () => c('kong.router.get_route'),
      getService: () => c('kong.router.get_service'),
    },
    nginx: {
      getVar: (name: string) => c('kong.nginx.get_var', name),
    },
    service: {
      setTarget: (host: string, port: number) => c('kong.service.set_target', host, port),
      request: {
        setPath: (p: string) => c('kong.service.request.set_path', p),
        setHeader: (name: string, value: string) =>
          c('kong.service.request.set_header', name, value),
        setHeaders: (headers: Record<string, HeaderValue>) =>
          c('kong.service.request.set_headers', headers),
        clearHeader: (name: string) => c('kong.service.request.clear_header', name),
        setRawBody: (body: string) => c('kong.service.request.set_raw_body', body),
        clearQueryArg: (name: string) => c('kong.service.request.clear_query_arg', name),
        enableBuffering: () => c('kong.service.request.enable_buffering'),
      },
      response: {
        getStatus: () => c('kong.service.response.get_status'),
        getHeaders: (max?: number) =>
          max === undefined
            ? c('kong.service.response.get_headers')
            : c('kong.service.response.get_headers', max),
        getRawBody: () => c('kong.service.response.get_raw_body'),
      },
    },
    response: {
      exit: (status: number, body?: unknown, headers?: Record<string, HeaderValue>) =>
        headers === undefined
          ? body === undefined
            ? c('kong.response.exit', status)
            : c('kong.response.exit', status, body)
          : c('kong.response.exit', status, body, headers),
      setHeader: (name: string, value: string) => c('kong.response.set_header', name, value),
      setHeaders: (headers: Record<string, HeaderValue>) => c('kong.response.set_headers', headers),
      getStatus: () => c('kong.response.get_status'),
      getHeader: (name: string) => c('kong.response.get_header', name),
      getHeaders: (max?: number) =>
        max === undefined ? c('kong.response.get_headers') : c('kong.response.get_headers', max),
      getSource: () => c('kong.response.get_source'),
    },
    ctx: {
      shared: {
        get: (key: string) => c('kong.ctx.shared.get', key),
        set: (key: string, value: string) => c('kong.ctx.shared.set', key, value),
      },
    },
    log: {
      debug: (...args: unknown[]) => c('kong.log.debug', ...args),
      info: (...args: unknown[]) => c('kong.log.info', ...args),
      notice: (...args: unknown[]) => c('kong.log.notice', ...args),
      warn: (...args: unknown[]) => c('kong.log.warn', ...args),
      err: (...args: unknown[]) => c('kong.log.err', ...args),
      setSerializeValue: (key: string, value: unknown) =>
        c('kong.log.set_serialize_value', key, value),
      serialize: () => c('kong.log.serialize'),
    },
  };
}

export const PATCHED = Symbol.for('kong-tenant-ai-gateway.fast-pdk');

interface PdkInstance {
  resetExpireTs(): void;
  executePhase(phase: string, kong: unknown): Promise<unknown>;
  name: string;
}
interface PdkServerLike {
  instances: Map<number, PdkInstance>;
  events: Map<number, unknown>;
  eventID: number;
  logger: { warn(...a: unknown[]): void };
}

export function pdkPath(file: string): string {
  return require.resolve(`kong-pdk/${file}`);
}

/**
 * kong-pdk's `Server.prototype.HandleEvent` with our facade in place of `new PDK(pipe).kong`
 * (server.js). Everything else is as kong-pdk does it: the instance's expiry reset, the event
 * id, the pipe pair kept in `events`, the phase run from `setImmediate`, "ret" at its end.
 */
export function patchHandleEvent(): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Server = require(pdkPath('server.js')) as {
    prototype: Record<string | symbol, unknown>;
  };
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const PipePair = require(
    path.join(path.dirname(pdkPath('server.js')), 'lib', 'pipe.js'),
  ) as new () => {
    getPair(): [EventPipe, EventPipe];
  };
  const proto = Server.prototype;
  if (proto[PATCHED]) return;
  proto.HandleEvent = async function handleEvent(
    this: PdkServerLike,
    event: { InstanceId: number; EventName: string },
  ) {
    const iid = event.InstanceId;
    servedInstances(this.instances);
    const ins = this.instances.get(iid);
    // Kong expects the error to start with "no plugin instance" (it then starts one again).
    if (!ins) throw new Error(`no plugin instance #${iid}`);
    ins.resetExpireTs();
    const phase = event.EventName;
    const eid = this.eventID++;
    const [ch, childCh] = new PipePair().getPair();
    this.events.set(eid, ch);
    countExchange(ins.name, phase);
    const sent = pipeCall(childCh);
    const counted: Call = (method, ...args) => {
      countExchange(ins.name, phase);
      return sent(method, ...args);
    };
    const batch = batchedCall(counted, ins.name, String(iid), phase);
    setImmediate(() => {
      Promise.resolve()
        .then(() =>
          ins.executePhase(
            phase,
            attachEvent(fastKong(batch.call), {
              call: batch.call,
              exited: batch.exited,
              sharedAtEnd: batch.sharedAtEnd,
            }),
          ),
        )
        // The writes still queued go before the phase's end (batch.ts), whatever its outcome.
        .then(
          () => batch.end(),
          async (ex: unknown) => {
            await batch.end();
            throw ex;
          },
        )
        .catch((ex: unknown) =>
          this.logger.warn(
            `unhandled exception in ${ins.name}.${phase} on instance #${iid}: ${String(ex)}`,
          ),
        )
        .finally(() => childCh.put('ret'));
    });
    const r = await ch.get();
    ins.resetExpireTs();
    return { Data: r, EventId: eid };
  };
  proto[PATCHED] = true;
}
