/**
 * A private, real redis-server for tests that would disturb a shared one: SCRIPT FLUSH,
 * CLIENT PAUSE, killing the server. Listens on 127.0.0.1 on a free port, keeps no data, and
 * is stopped in the test's teardown.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
export { freePort } from '../../harness/free-port';
import { freePort } from '../../harness/free-port';

export interface PrivateRedis {
  readonly port: number;
  readonly url: string;
  /** Stops the server now (the teardown then has nothing left to do). */
  stop(): Promise<void>;
  /** SIGKILL: a crash, nothing flushed beyond what `appendfsync` already wrote. */
  kill(): Promise<void>;
  /** Starts it again on the same port and data directory (after `kill` or `stop`). */
  restart(): Promise<void>;
  /** SIGSTOP / SIGCONT: the server hangs (connections stay open, nothing answers), then resumes. */
  pause(): void;
  resume(): void;
}

export interface PrivateRedisOptions {
  /**
   * Durable like production's billing Redis (docs/operations.md): `appendonly yes` with
   * `appendfsync always`, so a write acknowledged before a SIGKILL is there after `restart`.
   */
  durable?: boolean;
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
export async function startPrivateRedis(
  /** A test's context, or anything with `teardown` (a hook's Closers: `{ teardown: closers.add }`). */
  t: Pick<ExecutionContext, 'teardown'>,
  port?: number,
  options: PrivateRedisOptions = {},
): Promise<PrivateRedis> {
  const listenPort = port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'kta-redis-'));
  let child = await launch(listenPort, dir, options);
  // A stopped (SIGSTOP) process does not act on SIGTERM until it is continued.
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) child.kill('SIGCONT');
    stopped = false;
    child.kill('SIGTERM');
    await exited(child);
  };
  t.teardown(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    port: listenPort,
    url: `redis://127.0.0.1:${listenPort}`,
    stop,
    kill: async () => {
      child.kill('SIGKILL');
      await exited(child);
    },
    restart: async () => {
      await stop();
      child = await launch(listenPort, dir, options);
    },
    pause: () => {
      stopped = true;
      child.kill('SIGSTOP');
    },
    resume: () => {
      stopped = false;
      child.kill('SIGCONT');
    },
  };
}

async function launch(
  listenPort: number,
  dir: string,
  options: PrivateRedisOptions,
): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    [
      '--bind',
      '127.0.0.1',
      '--port',
      String(listenPort),
      '--save',
      '',
      ...(options.durable
        ? ['--appendonly', 'yes', '--appendfsync', 'always']
        : ['--appendonly', 'no']),
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
  return child;
}
