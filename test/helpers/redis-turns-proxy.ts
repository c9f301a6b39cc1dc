/**
 * A TCP proxy in front of a Redis that counts round trips ("turns") per connection: a turn
 * starts when the client writes after the server has last spoken (or for the first time).
 * Commands written together, before any reply (a pipeline, or node-redis's batched writes
 * of commands issued in one tick), are one turn; a command sent after a reply is another.
 * It does not parse RESP: it counts what a client's latency pays for, seen from the wire.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface TurnsProxy {
  readonly port: number;
  /** `redis://127.0.0.1:<port>`, to give a plugin as its Redis URL. */
  readonly url: string;
  /** Turns of every connection so far (subscriber connections included: they stay idle). */
  turns(): number;
  close(): Promise<void>;
}

export async function startTurnsProxy(target: string): Promise<TurnsProxy> {
  const to = new URL(target);
  const host = to.hostname || '127.0.0.1';
  const port = Number(to.port || 6379);
  let turns = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(port, host);
    sockets.add(client).add(upstream);
    let serverSpokeLast = true;
    client.on('data', (chunk) => {
      if (serverSpokeLast) turns += 1;
      serverSpokeLast = false;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      serverSpokeLast = true;
      client.write(chunk);
    });
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const listening = typeof address === 'object' && address ? address.port : 0;
  return {
    port: listening,
    url: `redis://127.0.0.1:${listening}`,
    turns: () => turns,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
