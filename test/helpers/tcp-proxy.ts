/**
 * A TCP proxy whose link can be cut: a dependency (Milvus) that dies and comes back, without
 * touching the shared service behind it. `cut()` resets every open connection and stops
 * listening (new connections are refused, as with a dead server); `restore()` listens again on
 * the same port.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

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
  let server: Server | undefined;
  let port = 0;

  const listen = async (): Promise<void> => {
    const s = createServer((client) => {
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
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => resolve());
    });
    port = (s.address() as { port: number }).port;
    server = s;
  };
  const stopListening = async (): Promise<void> => {
    const s = server;
    server = undefined;
    for (const sock of sockets) sock.resetAndDestroy();
    sockets.clear();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  };

  await listen();
  return {
    get port() {
      return port;
    },
    get address() {
      return `127.0.0.1:${port}`;
    },
    cut: stopListening,
    restore: listen,
    close: stopListening,
  };
}
