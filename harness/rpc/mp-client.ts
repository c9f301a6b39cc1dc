// MessagePack-RPC client for one plugin server socket.
// kong/runloop/plugin_servers/rpc/mp_rpc.lua (3.9.3) Rpc:call: request [0, msgid, method, {args}],
// response [1, msgid, err, result]; one message per write, then read the reply before anything
// else is written on that connection (the JS listener decodes one message per 'data' event).
// Kong keeps idle connections in a keepalive pool (c:setkeepalive); so does this client.
import { connect, type Socket } from 'node:net';
import { Decoder, Encoder } from '@msgpack/msgpack';

export class RpcError extends Error {
  constructor(
    message: string,
    /** true when the transport failed (connect refused, "no data"); false for a server-side error reply. */
    readonly transport: boolean,
  ) {
    super(message);
    this.name = 'RpcError';
  }
}

const encoder = new Encoder();

/** Reads exactly one msgpack message from a connection. */
function readOne(sock: Socket): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const cleanup = () => {
      sock.off('data', onData);
      sock.off('close', onClose);
      sock.off('error', onError);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      try {
        const msg = new Decoder().decode(Buffer.concat(chunks));
        cleanup();
        resolve(msg);
      } catch (e) {
        if (e instanceof RangeError || (e as Error).message.includes('Insufficient data')) return;
        cleanup();
        reject(new RpcError(`bad msgpack reply: ${(e as Error).message}`, true));
      }
    };
    // mp_rpc.lua: a connection closed before a whole reply is "no data"
    const onClose = () => {
      cleanup();
      reject(new RpcError('no data', true));
    };
    const onError = (e: Error) => {
      cleanup();
      reject(new RpcError(e.message, true));
    };
    sock.on('data', onData);
    sock.on('close', onClose);
    sock.on('error', onError);
  });
}

export class MpRpcClient {
  private msgId = 0;
  private readonly idle: Socket[] = [];
  private readonly all = new Set<Socket>();
  private closed = false;

  constructor(readonly socketPath: string) {}

  private open(): Promise<Socket> {
    const reused = this.idle.pop();
    if (reused) return Promise.resolve(reused);
    return new Promise((resolve, reject) => {
      const sock = connect(this.socketPath);
      const onError = (e: Error) => reject(new RpcError(`trying to connect: ${e.message}`, true));
      sock.once('error', onError);
      sock.once('connect', () => {
        sock.off('error', onError);
        sock.on('error', () => undefined); // reported through readOne
        this.all.add(sock);
        sock.once('close', () => {
          this.all.delete(sock);
          const i = this.idle.indexOf(sock);
          if (i >= 0) this.idle.splice(i, 1);
        });
        resolve(sock);
      });
    });
  }

  /** One RPC call; resolves with the result, rejects with RpcError. */
  async call(method: string, ...args: unknown[]): Promise<unknown> {
    if (this.closed) throw new RpcError('rpc client closed', true);
    const id = ++this.msgId;
    const sock = await this.open();
    const reply = readOne(sock);
    sock.write(encoder.encode([0, id, method, args]));
    let msg: unknown;
    try {
      msg = await reply;
    } catch (e) {
      sock.destroy();
      throw e;
    }
    if (!Array.isArray(msg) || msg[0] !== 1 || msg[1] !== id) {
      sock.destroy();
      throw new RpcError(`unexpected RPC response: ${JSON.stringify(msg)}`, true);
    }
    if (this.closed || sock.destroyed) sock.destroy();
    else this.idle.push(sock);
    const err: unknown = msg[2];
    if (err !== null && err !== undefined) throw new RpcError(String(err), false);
    return msg[3];
  }

  /** Drops pooled connections (e.g. after the server process died). */
  reset(): void {
    for (const s of this.all) s.destroy();
    this.idle.length = 0;
  }

  close(): void {
    this.closed = true;
    this.reset();
  }
}
