/**
 * Loaded first in every plugin-server process (the build's entry file requires it before the
 * plugin), to close a hole in kong-pdk 0.6.0 that Kong turns into failing open.
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
import path from 'node:path';

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

hardenPluginServer();
cleanPluginServerLogs();
