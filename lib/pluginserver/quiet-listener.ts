/**
 * A cost of kong-pdk 0.6.0 on every request, removed where it is cheap (loaded by harden.ts):
 * its listener builds `JSON.stringify(args)` of every message for a debug line, whatever the
 * log level (listener.js: the template string is evaluated before `logger.debug` decides) —
 * raw bodies and header maps included, on every RPC. `patchListener` replaces
 * `Listener.prototype.serve` with the same loop without that line; the behaviour is otherwise
 * kong-pdk's (one decoder per connection, partial messages buffered, replies
 * `[1, id, err, result]`), and a connection whose peer went away is dropped, never thrown.
 */
import path from 'node:path';
import { PATCHED, pdkPath } from './fast-pdk';

interface ListenerLike {
  ps: Record<string, ((...a: unknown[]) => unknown) | undefined>;
  prefix: string;
  logger: { info(...a: unknown[]): void; error(...a: unknown[]): void };
}

function errText(err: unknown): string {
  if (typeof err === 'string') return err;
  if (err instanceof Error) return err.message;
  return String(err);
}

/** kong-pdk's `Listener.prototype.serve` (listener.js) without the per-message debug JSON. */
export function patchListener(): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Listener = require(pdkPath('listener.js')) as {
    prototype: Record<string | symbol, unknown>;
  };
  const msgpackPath = require.resolve('@msgpack/msgpack', {
    paths: [path.dirname(pdkPath('listener.js'))],
  });
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Encoder, Decoder } = require(msgpackPath) as {
    Encoder: new () => { encode(v: unknown): Uint8Array };
    Decoder: new () => { decode(b: Uint8Array): unknown };
  };
  const proto = Listener.prototype;
  if (proto[PATCHED]) return;
  proto.serve = function serve(this: ListenerLike) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const fs = require('node:fs') as typeof import('node:fs');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const net = require('node:net') as typeof import('node:net');
    try {
      fs.unlinkSync(this.prefix);
    } catch (ex) {
      if ((ex as NodeJS.ErrnoException).code !== 'ENOENT') throw ex;
    }
    const server = net.createServer((client) => {
      const encoder = new Encoder();
      const decoder = new Decoder();
      let pending: Buffer[] | undefined;
      // A peer that went away (Kong closed its end: a timeout, a reload, the harness giving
      // up on a request) makes the next write fail with EPIPE or the read with ECONNRESET. An
      // 'error' with no listener is thrown and ends the process: every request of the chain
      // would then fail until the respawn, which a burst of such peers turned into a crash
      // loop (the harness's chain-crash drill). The connection is dropped, the process lives.
      client.on('error', () => client.destroy());
      const reply = (msgid: unknown, err: string | undefined, result: unknown) => {
        if (client.destroyed || !client.writable) return;
        client.write(encoder.encode([1, msgid, err, result]));
      };
      client.on('data', (chunk: Buffer) => {
        let message: unknown;
        const data = pending ? Buffer.concat([...pending, chunk]) : chunk;
        try {
          message = decoder.decode(data);
          pending = undefined;
        } catch (ex) {
          // kong-pdk's way to see a partial message: wait for the rest.
          if (ex instanceof Error && ex.message === 'Insufficient data') {
            pending = [data];
            return;
          }
          throw ex;
        }
        const [, msgid, method, args] = message as [number, number, string, unknown[]];
        const [ns, cmd] = method.split('.') as [string, string];
        if (ns !== 'plugin') return reply(msgid, `RPC for ${ns} is not supported`, undefined);
        const fn = this.ps[cmd];
        if (typeof fn !== 'function') {
          this.logger.error(`rpc: #${msgid} method ${cmd} not implemented`);
          return reply(msgid, `method ${cmd} not implemented`, undefined);
        }
        let promise: unknown;
        try {
          promise = fn.apply(this.ps, args);
        } catch (ex) {
          this.logger.error(ex instanceof Error ? ex.stack : String(ex));
          return reply(msgid, errText(ex), undefined);
        }
        Promise.resolve(promise).then(
          (ret) => reply(msgid, undefined, ret),
          (err: unknown) => {
            this.logger.error(`rpc: # ${msgid} ${errText(err)}`);
            reply(msgid, errText(err), undefined);
          },
        );
      });
    });
    server.listen(this.prefix);
    this.logger.info('server started at', this.prefix);
    return server;
  };
  proto[PATCHED] = true;
}
