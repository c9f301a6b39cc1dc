/**
 * A private, real redis-server for tests that would disturb a shared one: SCRIPT FLUSH,
 * CLIENT PAUSE, killing the server. Listens on 127.0.0.1 on a free port, keeps no data, and
 * is stopped in the test's teardown.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';

export interface PrivateRedis {
  readonly port: number;
  readonly url: string;
  /** Stops the server now (the teardown then has nothing left to do). */
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    let reply = '';
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
    socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Starts redis-server on `port` (a free one by default); stopped by `t.teardown`. */
export async function startPrivateRedis(t: ExecutionContext, port?: number): Promise<PrivateRedis> {
  const listenPort = port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'kta-redis-'));
  const child = spawn(
    'redis-server',
    [
      '--bind',
      '127.0.0.1',
      '--port',
      String(listenPort),
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
      '--loglevel',
      'warning',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  const stop = async (): Promise<void> => {
    child.kill('SIGTERM');
    await exited(child);
  };
  t.teardown(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const deadline = Date.now() + 10_000;
  while (!(await answersPing(listenPort))) {
    const failed = await Promise.race([spawnError, new Promise((r) => setTimeout(r, 50))]);
    if (failed instanceof Error || child.exitCode !== null || Date.now() > deadline) {
      throw new Error(
        `private redis-server on port ${listenPort} did not start ` +
          `(is redis-server installed? scripts/services/redis.sh install): ` +
          `${failed instanceof Error ? failed.message : stderr.trim() || 'no PONG'}`,
      );
    }
  }
  return { port: listenPort, url: `redis://127.0.0.1:${listenPort}`, stop };
}
