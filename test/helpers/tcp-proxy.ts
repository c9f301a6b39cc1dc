/**
 * A TCP proxy whose link can be cut: a dependency (Milvus) that dies and comes back, without
 * touching the shared service behind it. `cut()` resets every open connection and every new
 * one (accepted, then reset at once, as a dead server's host answers); `restore()` lets them
 * through again. The port stays bound throughout: released during a cut, it was free for any
 * other test's listen(0) to take (a CI run saw a 200 served "during" a Milvus cut), and the
 * restore could then not have it back.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { freePort } from '../../harness/free-port';

export interface CuttableProxy {
  readonly port: number;
  /** `127.0.0.1:<port>`, to give a plugin as the dependency's address. */
  readonly address: string;
  cut(): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function startCuttableProxy(target: string): Promise<CuttableProxy> {
  const [host = '127.0.0.1', portText = ''] = target.split(':');
  const targetPort = Number(portText);
  const sockets = new Set<Socket>();
  let cut = false;

  const server: Server = createServer((client) => {
    if (cut) {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect(targetPort, host);
    sockets.add(client).add(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  const port = await freePort();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const resetAll = (): void => {
    for (const sock of sockets) sock.resetAndDestroy();
    sockets.clear();
  };

  return {
    port,
    address: `127.0.0.1:${port}`,
    cut: () => {
      cut = true;
      resetAll();
      return Promise.resolve();
    },
    restore: () => {
      cut = false;
      return Promise.resolve();
    },
    close: async () => {
      cut = true;
      resetAll();
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
