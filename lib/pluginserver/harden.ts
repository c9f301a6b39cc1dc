/**
 * Loaded first in every plugin-server process (the build's entry file requires it before the
 * plugin), to fix three things in kong-pdk 0.6.0: a decoder crash Kong turns into failing open
 * (below), log lines full of escape codes (`cleanPluginServerLogs`), and an event map that
 * grew by one entry per refused request (`plugPendingEventLeak`); and to take two costs off
 * every RPC (fast-pdk.ts: the listener's debug JSON, the PDK's Proxies).
 *
 * Kong sends header and query maps as MessagePack maps keyed by the client's names. A client
 * header (or query argument) named `__proto__` makes @msgpack/msgpack 2.x throw
 * "The key __proto__ is not allowed" inside kong-pdk's socket handler (listener.js), where
 * nothing catches it: the plugin server exits, and Kong, which only logs an RPC failure
 * (kong/runloop/plugin_servers/rpc/mp_rpc.lua handle_event), proxies the request — and every
 * other request in flight — without the plugin.
 *
 * The fix renames that one key to `\0_proto__` (same length, and a name no HTTP header or
 * query argument can have, so it cannot collide) and decodes again. Any other decode error is
 * left as it was.
 */
import { randomInt } from 'node:crypto';
import path from 'node:path';
import { Counter, Gauge } from 'prom-client';
import { registry } from '../metrics/registry';
import { batchStats, endsWithExit } from './batch';
import { exchangeCounts } from './exchanges';
import { patchHandleEvent } from './fast-pdk';
import { patchListener } from './quiet-listener';

interface DecoderClass {
  prototype: { decode(this: unknown, buffer: ArrayLike<number> | ArrayBuffer): unknown };
}

const PROTO_ERROR = 'The key __proto__ is not allowed';
// fixstr of length 9 (0xa9) followed by the bytes of the name, as Kong's lua-MessagePack packs it.
const PROTO_KEY = Buffer.concat([Buffer.from([0xa9]), Buffer.from('__proto__', 'latin1')]);
const SAFE_KEY = Buffer.concat([Buffer.from([0xa9]), Buffer.from('\0_proto__', 'latin1')]);

/** Replaces every packed `__proto__` key with `\0_proto__` (same length). */
export function renameProtoKeys(input: Uint8Array): Buffer {
  const out = Buffer.from(input);
  for (let i = out.indexOf(PROTO_KEY); i >= 0; i = out.indexOf(PROTO_KEY, i + PROTO_KEY.length)) {
    SAFE_KEY.copy(out, i);
  }
  return out;
}

function toBytes(buffer: ArrayLike<number> | ArrayBuffer): Uint8Array {
  if (buffer instanceof Uint8Array) return buffer;
  if (buffer instanceof ArrayBuffer) return new Uint8Array(buffer);
  return Uint8Array.from(buffer as ArrayLike<number>);
}

const PATCHED = Symbol.for('kong-tenant-ai-gateway.msgpack-proto-patch');

/** Patches the Decoder that kong-pdk's listener uses (idempotent). */
export function hardenPluginServer(): void {
  const listenerDir = path.dirname(require.resolve('kong-pdk/listener.js'));
  const msgpackPath = require.resolve('@msgpack/msgpack', { paths: [listenerDir] });
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Decoder } = require(msgpackPath) as { Decoder: DecoderClass };
  const proto = Decoder.prototype as DecoderClass['prototype'] & { [PATCHED]?: true };
  if (proto[PATCHED]) return;
  const original = proto.decode;
  proto.decode = function decode(this: unknown, buffer) {
    try {
      return original.call(this, buffer);
    } catch (e) {
      if (!(e instanceof Error) || e.message !== PROTO_ERROR) throw e;
      return original.call(this, renameProtoKeys(toBytes(buffer)));
    }
  };
  proto[PATCHED] = true;
}

const cleanedLoggers = new WeakSet<object>();

type LogLevel = 'error' | 'warn' | 'info' | 'debug' | 'success';
interface ColorLogger {
  isAllowedLevel(level: string): boolean;
  [method: string]: unknown;
}

/** One log line: the arguments joined, control characters (escape codes, newlines) flattened. */
export function logLine(level: string, args: readonly unknown[]): string {
  const text = args
    .map((a) => {
      if (typeof a === 'string') return a;
      if (a instanceof Error) return a.stack ?? a.message;
      try {
        return JSON.stringify(a);
      } catch {
        return String(a);
      }
    })
    .join(' ');
  const flat = text.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').replace(/[\x00-\x1f\x7f]+/g, ' | ');
  return `${level}: ${flat.trim()}`;
}

/**
 * kong-pdk logs through node-color-log, whose coloured mode writes each message as several
 * lines joined by cursor-movement codes ("joint"), growing with every call: in Kong's error
 * log (which prefixes each plugin-server line with `[name:pid]`) that is noise with escape
 * codes. Each level becomes one plain line; the level filter stays the logger's.
 */
export function cleanPluginServerLogs(write: (line: string) => void = (l) => console.log(l)): void {
  const pdkDir = path.dirname(require.resolve('kong-pdk/package.json'));
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const logger = require(require.resolve('node-color-log', { paths: [pdkDir] })) as ColorLogger;
  if (cleanedLoggers.has(logger)) return;
  for (const level of ['error', 'warn', 'info', 'debug', 'success'] as LogLevel[]) {
    logger[level] = (...args: unknown[]) => {
      if (logger.isAllowedLevel(level === 'success' ? 'info' : level)) write(logLine(level, args));
    };
  }
  cleanedLoggers.add(logger);
}

/** The slice of kong-pdk's `Server` (server.js) the leak fix touches. */
interface PdkServer {
  events: Map<number, unknown>;
  HandleEvent(event: unknown): Promise<StepReply>;
  step(data: unknown, isError: boolean): Promise<StepReply>;
}
interface StepReply {
  Data: unknown;
  EventId: number;
}

const MSG_RET = 'ret';
const liveServers = new Set<PdkServer>();

/** An event Kong will never step again: finished, or handed Kong a `kong.response.exit`. */
function eventIsOver(data: unknown): boolean {
  if (data === MSG_RET) return true;
  if (typeof data !== 'object' || data === null) return false;
  const { Method, Args } = data as { Method?: unknown; Args?: unknown };
  return endsWithExit(Method, Args);
}

/**
 * kong-pdk 0.6.0 keeps one entry per event in `server.events` and drops it only inside a
 * `step` that returns "ret". Two kinds of events never get there, so their entries (and the
 * pipe pair each holds) stayed for the life of the process:
 *  - a phase that ends without a PDK call: `HandleEvent` itself answers "ret";
 *  - a phase that calls `kong.response.exit`: Kong runs the exit inside the plugin iterator's
 *    coroutine and yields it (kong/pdk/response.lua, `ctx.delay_response`: coroutine.yield())
 *    or ends the request (ngx.exit), and never sends the next Step
 *    (kong/runloop/plugin_servers/rpc/mp_rpc.lua bridge_loop).
 * Every refused request is the second kind. The entry is removed as the reply leaves.
 */
export function plugPendingEventLeak(): void {
  const serverPath = require.resolve('kong-pdk/server.js');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Server = require(serverPath) as { prototype: PdkServer };
  const proto = Server.prototype as PdkServer & { [PATCHED]?: true };
  if (proto[PATCHED]) return;
  const { HandleEvent, step } = proto;
  const settle = (server: PdkServer, reply: StepReply): StepReply => {
    liveServers.add(server);
    if (reply && eventIsOver(reply.Data)) server.events.delete(reply.EventId);
    return reply;
  };
  proto.HandleEvent = async function handleEvent(this: PdkServer, event) {
    return settle(this, await HandleEvent.call(this, event));
  };
  proto.step = async function stepEvent(this: PdkServer, data, isError) {
    return settle(this, await step.call(this, data, isError));
  };
  proto[PATCHED] = true;
}

/** The slice of kong-pdk's `Server` the instance-id fix touches. */
interface InstanceIdServer {
  instanceID: number;
  StartInstance(cfg: unknown): Promise<unknown>;
}

const ID_BASED = Symbol('kta.instance-ids-based');

/**
 * kong-pdk numbers plugin instances 0, 1, 2… in each process, and Kong caches the id it got
 * from StartInstance (kong/runloop/plugin_servers/plugin.lua). A plugin server that dies and
 * is respawned numbers from 0 again, while Kong still sends the ids of the old process: a
 * cached id then names whatever instance the new process gave that number, another config of
 * the plugin, or, with the chain co-hosted in one process, another plugin, whose phase would
 * run in its place. Only an unknown id makes Kong start the instance again ("no plugin
 * instance", rpc/mp_rpc.lua handle_event). So each process numbers from a random base of its
 * own (below 2^52: the ids cross Lua as doubles), and an id of a dead process is unknown to
 * its successor.
 */
export function randomiseInstanceIds(): void {
  const serverPath = require.resolve('kong-pdk/server.js');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Server = require(serverPath) as { prototype: InstanceIdServer };
  const proto = Server.prototype as InstanceIdServer & { [PATCHED_IDS]?: true };
  if (proto[PATCHED_IDS]) return;
  const { StartInstance } = proto;
  proto.StartInstance = function startInstance(
    this: InstanceIdServer & { [ID_BASED]?: true },
    cfg,
  ) {
    if (!this[ID_BASED]) {
      this[ID_BASED] = true;
      this.instanceID += randomInt(1, 2 ** 47) * 16;
    }
    return StartInstance.call(this, cfg);
  };
  proto[PATCHED_IDS] = true;
}

const PATCHED_IDS = Symbol.for('kong-tenant-ai-gateway.instance-ids');

/** Events the plugin server holds open right now (a gauge: it must return to 0 when idle). */
export function pendingPluginServerEvents(): number {
  let n = 0;
  for (const s of liveServers) n += s.events.size;
  return n;
}

new Gauge({
  name: 'kta_pluginserver_pending_events',
  help: 'Events (phase calls from Kong) this plugin server holds open; returns to 0 when idle',
  registers: [registry],
  collect() {
    this.set(pendingPluginServerEvents());
  },
});

new Counter({
  name: 'kta_pdk_exchanges_total',
  help: 'Round trips with Kong per plugin and phase: phase starts and PDK calls (a batch of calls is one)',
  labelNames: ['plugin', 'phase'],
  registers: [registry],
  collect() {
    this.reset();
    for (const c of exchangeCounts.values()) this.inc({ plugin: c.plugin, phase: c.phase }, c.n);
  },
});

new Counter({
  name: 'kta_pdk_batched_calls_total',
  help: 'PDK calls sent inside batches (kong.yml pre-function snippet lib/pluginserver/pdk-batch.lua)',
  registers: [registry],
  collect() {
    this.reset();
    this.inc(batchStats.callsInBatches);
  },
});

new Counter({
  name: 'kta_pdk_batch_fallbacks_total',
  help: 'Batches Kong could not run (no batch snippet on the route): the calls went one by one',
  registers: [registry],
  collect() {
    this.reset();
    this.inc(batchStats.fallbacks);
  },
});

hardenPluginServer();
cleanPluginServerLogs();
// Before the leak fix, which wraps whatever HandleEvent is in place.
patchHandleEvent();
plugPendingEventLeak();
patchListener();
randomiseInstanceIds();
