// One kong-js-pluginserver process per external plugin, as Kong 3.9.3 runs them.
// kong/runloop/plugin_servers/process.lua (3.9.3):
//  - query_external_plugin_info: run the query command once, JSON-decode stdout, take
//    `(dump.Plugins or dump)[1]`;
//  - pluginserver_timer: spawn the start command (stdout+stderr merged into Kong's log, prefixed
//    "[name:pid] "), and when it exits respawn it, at most once per second (next_spawn = now + 1);
//  - stop_pluginservers: SIGTERM.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import type { PluginDump } from '../types';

const PLUGINSERVER_BIN = join(
  dirname(require.resolve('kong-pdk/package.json')),
  'bin',
  'kong-js-pluginserver',
);

export interface PluginServerSpec {
  name: string;
  dir: string;
  prefix: string;
  env: Record<string, string>;
  logger: (line: string) => void;
}

/** `kong-js-pluginserver -d <dir> --dump-all-plugins`, parsed as Kong does. */
export function queryPluginInfo(spec: PluginServerSpec): Promise<PluginDump> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [PLUGINSERVER_BIN, '-d', spec.dir, '--dump-all-plugins'],
      { env: { ...process.env, ...spec.env }, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err)
          return reject(
            new Error(`error loading plugins info from [${spec.name}]: ${err.message}\n${stderr}`),
          );
        let dump: unknown;
        try {
          dump = JSON.parse(stdout);
        } catch (e) {
          return reject(
            new Error(
              `failed decoding plugin info for '${spec.name}': ${(e as Error).message}; stdout was:\n${stdout}`,
            ),
          );
        }
        const list = (dump as { Plugins?: unknown }).Plugins ?? dump;
        const info = Array.isArray(list) ? (list[0] as PluginDump | undefined) : undefined;
        if (!info || typeof info.Name !== 'string') {
          return reject(
            new Error(
              `not a plugin info table for '${spec.name}' (directory ${spec.dir}):\n${stdout}`,
            ),
          );
        }
        if (Array.isArray(list) && list.length > 1) {
          spec.logger(
            `[harness] ${spec.dir} holds ${list.length} plugins; Kong uses only the first ('${info.Name}')`,
          );
        }
        resolve(info);
      },
    );
  });
}

function canConnect(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export class PluginServerProcess {
  readonly socketPath: string;
  restarts = 0;
  private child: ChildProcess | undefined;
  private stopping = false;
  private lastSpawn = 0;
  private readyWaiters: Array<() => void> = [];
  private ready = false;
  /** Called when a new process (after a crash) is listening: one hook per plugin it serves. */
  private readonly respawnHooks: Array<() => void> = [];

  constructor(readonly spec: PluginServerSpec) {
    this.socketPath = join(spec.prefix, `${spec.name}.sock`);
  }

  /** Runs `hook` whenever a new process (after a crash) is listening. */
  onRespawn(hook: () => void): void {
    this.respawnHooks.push(hook);
  }

  get pid(): number {
    return this.child?.pid ?? -1;
  }

  start(): Promise<void> {
    this.spawnOnce();
    return this.waitReady();
  }

  waitReady(): Promise<void> {
    if (this.ready) return Promise.resolve();
    return new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  private spawnOnce(): void {
    this.lastSpawn = Date.now();
    this.ready = false;
    const { spec } = this;
    spec.logger(`[harness] starting pluginserver process for ${spec.name}`);
    const child = spawn(
      process.execPath,
      [
        PLUGINSERVER_BIN,
        '-d',
        spec.dir,
        '--sock-name',
        `${spec.name}.sock`,
        '--kong-prefix',
        spec.prefix,
      ],
      { env: { ...process.env, ...spec.env }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child = child;
    const prefix = `[${spec.name}:${child.pid ?? '?'}] `;
    for (const stream of [child.stdout, child.stderr]) {
      if (stream)
        createInterface({ input: stream }).on(
          'line',
          (line) => line !== '' && spec.logger(prefix + line),
        );
    }
    child.once('exit', (code, signal) => {
      spec.logger(
        `[harness] external pluginserver '${spec.name}' terminated: ${signal ?? 'exit'} ${code ?? ''}`,
      );
      this.ready = false;
      if (this.stopping) return;
      const delay = Math.max(0, this.lastSpawn + 1000 - Date.now());
      setTimeout(() => {
        if (this.stopping) return;
        this.spawnOnce();
        void this.waitReady().then(() => {
          this.restarts++;
          this.respawnHooks.forEach((hook) => hook());
        });
      }, delay);
    });
    void this.pollReady(child);
  }

  private async pollReady(child: ChildProcess): Promise<void> {
    const deadline = Date.now() + 30000;
    while (
      !this.stopping &&
      this.child === child &&
      child.exitCode === null &&
      Date.now() < deadline
    ) {
      if (await canConnect(this.socketPath)) {
        this.ready = true;
        const waiters = this.readyWaiters;
        this.readyWaiters = [];
        waiters.forEach((w) => w());
        return;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /**
   * SIGTERM now, without waiting: for the process 'exit' hook, where nothing asynchronous
   * runs any more. Also stops respawning. Safe to call more than once.
   */
  terminateNow(): void {
    this.stopping = true;
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  }

  /** SIGKILL (a node dying), no respawn; resolves when the process has exited. */
  async killNow(): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }

  /** SIGTERM, as stop_pluginservers does; resolves when the process has exited. */
  async stop(): Promise<void> {
    this.stopping = true;
    const child = this.child;
    const waiters = this.readyWaiters;
    this.readyWaiters = [];
    waiters.forEach((w) => w());
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }
}
