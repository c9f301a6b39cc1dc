/**
 * startKong: the real Kong 3.9.3 (DB-less) around the project's plugin servers, with the same
 * `Gateway` interface as the harness, so the end-to-end and isolation suites and `npm start`
 * run on either (`GATEWAY=kong|harness`).
 *
 * Per run: a fresh prefix (nginx conf, pids, logs), a generated kong.conf (DB-less, the given
 * declarative config, proxy on 127.0.0.1 only, admin/status off) and the plugin-server
 * settings from `docker/kong-pluginservers.sh`, the same generator as the compose stack's.
 * `close()` stops Kong, waits for every process it started (nginx and the plugin servers) to
 * be gone, and keeps the error log under `.run/kong-logs/` for the test report.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { addExitHook } from '../harness/exit-hooks';
import { PROJECT_KONG_CONF } from '../harness/gateway';
import { queryPluginInfo } from '../harness/pluginserver/process';
import {
  CHAIN_DIR,
  CHAIN_SOCKET,
  isCoHosted,
  resolvePluginServerMode,
} from '../harness/pluginserver/layout';
import type { Gateway, GatewayOptions, PluginDump, PluginServerMode } from '../harness/types';
import { kongEnv, locateKong, type KongInstall } from './locate';
import { alive, pidsWith, processTree, running } from './processes';
import { freePort } from '../harness/free-port';

export { locateKong } from './locate';

const ROOT = resolve(
  __dirname,
  '..',
  existsSync(join(__dirname, '..', 'package.json')) ? '' : '..',
);
const GENERATOR = join(ROOT, 'docker', 'kong-pluginservers.sh');
/**
 * Kong's own errors (no credential, no route, upstream unreachable, timeouts, nginx's 400s) in
 * the shape OpenAI clients parse: `error_template_json` (Kong formats it with the message and
 * the request id, kong/error_handlers.lua) and JSON as the default type when a client states
 * no Accept (kong.conf `error_default_type`). The compose stack sets the same two.
 */
export const ERROR_TEMPLATE = join(ROOT, 'docker', 'error-template.json');
const PLUGINSERVER_BIN = join(
  dirname(require.resolve('kong-pdk/package.json')),
  'bin',
  'kong-js-pluginserver',
);

export class KongStartError extends Error {
  override readonly name = 'KongStartError';
}

export interface KongOptions extends GatewayOptions {
  /** nginx worker processes; default 1 (tests), `npm start` and benchmarks may ask for more. */
  workers?: number;
  /** Extra kong.conf lines (`key = value`), e.g. error templates. */
  kongConf?: Record<string, string | number | boolean>;
  /** A name for the kept logs (`.run/kong-logs/<label>-<id>.log`). */
  label?: string;
}

export interface KongGateway extends Gateway {
  readonly kind: 'kong';
  readonly prefix: string;
  /** Kong's error log so far (plugin-server output lands there too). */
  errorLog(): string;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function runKongCli(
  kong: KongInstall,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<{ ok: boolean; out: string }> {
  const quoted = args.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const script = `${kong.envScript ? `. '${kong.envScript}' >/dev/null 2>&1 && ` : ''}exec '${kong.bin}' ${quoted}`;
  return new Promise((res) => {
    execFile('bash', ['-c', script], { env, timeout: timeoutMs }, (err, stdout, stderr) =>
      res({ ok: !err, out: `${stdout}${stderr}` }),
    );
  });
}

/** The KONG_* settings docker/kong-pluginservers.sh derives for these plugin-server dirs. */
export function pluginServerSettings(
  dirs: string[],
  socketDir: string,
  envNames: string[],
  mode: PluginServerMode = 'chain',
  chainDir: string = CHAIN_DIR,
): Record<string, string> {
  const out = execFileSync('sh', ['-c', `. '${GENERATOR}' && env -0`], {
    encoding: 'utf8',
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      KTA_PLUGINSERVER_DIRS: dirs.join(' '),
      KTA_PLUGINSERVER_CMD: `${process.execPath} ${PLUGINSERVER_BIN}`,
      KTA_SOCKET_DIR: socketDir,
      KTA_PLUGINSERVER_ENV: envNames.join(' '),
      KTA_PLUGINSERVER_MODE: mode,
      KTA_CHAIN_DIR: chainDir,
    },
  });
  const settings: Record<string, string> = {};
  for (const entry of out.split('\0')) {
    const eq = entry.indexOf('=');
    const k = entry.slice(0, eq);
    if (k.startsWith('KONG_')) settings[k] = entry.slice(eq + 1);
  }
  return settings;
}

function keepLogs(prefix: string, label: string): void {
  const src = join(prefix, 'logs', 'error.log');
  if (!existsSync(src)) return;
  const dir = join(ROOT, '.run', 'kong-logs');
  mkdirSync(dir, { recursive: true });
  copyFileSync(src, join(dir, `${label}.log`));
}

/**
 * Starts a real Kong; throws KongStartError with Kong's own message when it refuses. A port
 * chosen here (no `opts.port`) that someone else bound before Kong did is chosen again, twice.
 */
export async function startKong(opts: KongOptions): Promise<KongGateway> {
  if (opts.port !== undefined) return startKongOnce(opts, opts.port);
  return startKongOnAFreePort(opts, freePort);
}

/** startKong's choice of port, with the chooser as a parameter (a test hands it a taken port). */
export async function startKongOnAFreePort(
  opts: KongOptions,
  choose: (host: string) => Promise<number>,
): Promise<KongGateway> {
  for (let attempt = 1; ; attempt++) {
    const port = await choose(opts.host ?? '127.0.0.1');
    try {
      return await startKongOnce(opts, port);
    } catch (e) {
      const taken = e instanceof KongStartError && e.message.includes(`:${port} failed (98:`);
      if (!taken || attempt >= 3) throw e;
      opts.logger?.(`[kong] port ${port} was taken before Kong bound it; another port`);
    }
  }
}

async function startKongOnce(opts: KongOptions, port: number): Promise<KongGateway> {
  const kong = locateKong();
  if (!kong) {
    throw new KongStartError(
      'no Kong 3.9 found (KONG_INSTALL_DIR, /opt/kong-3.9.3, PATH): run `scripts/services/kong.sh install`',
    );
  }
  const host = opts.host ?? '127.0.0.1';
  const id = randomBytes(4).toString('hex');
  const label = `${opts.label ?? 'kong'}-${id}`;
  // Unix socket paths are limited to 107 bytes: keep the prefix short, under the temp dir.
  const prefix = mkdtempSync(join(tmpdir(), 'kta-kong-'));
  const socketDir = join(prefix, 's');
  mkdirSync(socketDir);
  // Started as root, nginx workers (and the plugin servers they spawn) run as `nginx_user`;
  // as root we keep them root (a test machine), else they run as the calling user anyway.
  chmodSync(prefix, 0o755);
  chmodSync(socketDir, 0o777);

  let declarativePath: string;
  if (typeof opts.config === 'string') {
    declarativePath = isAbsolute(opts.config) ? opts.config : resolve(opts.config);
  } else {
    declarativePath = join(prefix, 'kong.json');
    writeFileSync(declarativePath, JSON.stringify(opts.config));
  }
  const dirs = Object.entries(opts.pluginServers).map(([name, dir]) => {
    const abs = resolve(dir);
    if (abs.split('/').pop() !== name) {
      throw new KongStartError(
        `plugin server '${name}': its directory must be named after the plugin (${abs})`,
      );
    }
    return abs;
  });
  const names = Object.keys(opts.pluginServers);
  const pluginEnv = { ...(opts.env ?? {}) };
  const mode = resolvePluginServerMode(opts.pluginServerMode);
  const settings = pluginServerSettings(dirs, socketDir, Object.keys(pluginEnv), mode);
  // The co-hosted process is started by the first co-hosted plugin's entry (the generator).
  const chainStarter = names.find((n) => isCoHosted(n, mode));
  const conf: Record<string, string | number | boolean> = {
    prefix,
    database: 'off',
    declarative_config: declarativePath,
    proxy_listen: `${host}:${port}`,
    admin_listen: 'off',
    admin_gui_listen: 'off',
    status_listen: 'off',
    anonymous_reports: 'off',
    nginx_worker_processes: opts.workers ?? 1,
    log_level: 'notice',
    ...PROJECT_KONG_CONF,
    error_template_json: ERROR_TEMPLATE,
    ...(process.getuid?.() === 0 ? { nginx_user: 'root root' } : {}),
    ...(opts.kongConf ?? {}),
  };
  const confPath = join(prefix, 'kong.conf');
  writeFileSync(
    confPath,
    Object.entries(conf)
      .map(([k, v]) => `${k} = ${String(v)}`)
      .join('\n') + '\n',
  );
  const env: NodeJS.ProcessEnv = { ...kongEnv(process.env), ...pluginEnv, ...settings };
  const log = opts.logger ?? (() => undefined);
  const errorLogPath = join(prefix, 'logs', 'error.log');
  const errorLog = () => (existsSync(errorLogPath) ? readFileSync(errorLogPath, 'utf8') : '');

  let stopped = false;
  const killLeftovers = () => {
    for (const pid of pidsWith(prefix)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  };
  const removeExitHook = addExitHook(() => {
    // The process is exiting without close(): no async work possible; take everything down.
    killLeftovers();
    rmSync(prefix, { recursive: true, force: true });
  });

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await runKongCli(kong, ['stop', '-p', prefix], env, 30000);
    // Kong's workers SIGTERM their plugin servers on exit; wait for all of them.
    const deadline = Date.now() + 10000;
    while (pidsWith(prefix).some(alive) && Date.now() < deadline) await sleep(50);
    killLeftovers();
    keepLogs(prefix, label);
    removeExitHook();
    rmSync(prefix, { recursive: true, force: true });
  };

  /** SIGKILL the master first (so no worker is respawned), then its workers and plugin servers. */
  const kill = async () => {
    const pidFile = join(prefix, 'pids', 'nginx.pid');
    const master = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : NaN;
    const victims = [
      ...(Number.isInteger(master) ? processTree(master) : []),
      ...pidsWith(prefix),
    ].filter((p, i, a) => a.indexOf(p) === i && p !== process.pid);
    for (const pid of victims) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    const deadline = Date.now() + 10000;
    while (victims.some(running) && Date.now() < deadline) await sleep(20);
  };

  // What Kong will read from each plugin server (its query_cmd), for pluginServerInfo().
  const dumpList = Promise.all(
    dirs.map((dir, i) =>
      queryPluginInfo({
        name: names[i] as string,
        dir,
        prefix: socketDir,
        env: pluginEnv,
        logger: log,
      }),
    ),
  );
  const started = await runKongCli(kong, ['start', '-c', confPath], env, 60000);
  if (!started.ok) {
    // The last error lines and what follows them: a declarative-config error goes on over
    // several lines (the field paths) that carry no level of their own. When the CLI was cut
    // off by its timeout (a loaded machine), this is all the message there is.
    const lines = errorLog().split('\n');
    const levels = lines
      .map((l, i) => (/\[(error|crit|emerg|alert)\]/.test(l) ? i : -1))
      .filter((i) => i >= 0);
    const from = levels.length ? (levels[Math.max(0, levels.length - 5)] as number) : -1;
    const detail = (from >= 0 ? lines.slice(from, from + 60).join('\n') : '') || started.out.trim();
    await stop();
    throw new KongStartError(
      `Kong ${kong.version} refused to start: ${started.out.trim()}\n${detail}`,
    );
  }
  log(`[kong] Kong ${kong.version} started: http://${host}:${port} (prefix ${prefix})`);

  // Worker 0 spawns the plugin servers from a timer after start: wait for their sockets.
  const sockDeadline = Date.now() + 40000;
  const socketOf = (n: string) => (isCoHosted(n, mode) ? CHAIN_SOCKET : `${n}.sock`);
  const pending = () => names.filter((n) => !existsSync(join(socketDir, socketOf(n))));
  while (pending().length && Date.now() < sockDeadline) await sleep(50);
  if (pending().length) {
    const tail = errorLog().split('\n').slice(-20).join('\n');
    await stop();
    throw new KongStartError(`plugin servers did not come up: ${pending().join(', ')}\n${tail}`);
  }
  const dumps = new Map<string, PluginDump>();
  try {
    (await dumpList).forEach((d, i) => dumps.set(names[i] as string, d));
  } catch (e) {
    await stop();
    throw e;
  }

  return {
    kind: 'kong',
    url: `http://${host}:${port}`,
    port,
    prefix,
    errorLog,
    // The real Kong gives no per-request PDK counts: the harness measures those.
    requestStats: () => undefined,
    // Kong runs an external plugin's log phase from a timer after the response and signals
    // nothing when it ends: allow it a moment. Tests that check a log effect poll for it.
    logDone: () => sleep(300),
    pluginServerInfo: (name) => {
      if (!(name in opts.pluginServers)) throw new Error(`no plugin server '${name}'`);
      const coHosted = isCoHosted(name, mode);
      const starter = coHosted ? (chainStarter as string) : name;
      const marker = `--sock-name ${coHosted ? CHAIN_SOCKET : `${name}.sock`}`;
      const pid = pidsWith(prefix).find((p) => {
        try {
          return readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ').includes(marker);
        } catch {
          return false;
        }
      });
      const starts = errorLog()
        .split('\n')
        .filter((l) =>
          new RegExp(`starting pluginserver process for ${starter}(,|$)`).test(l),
        ).length;
      return {
        pid: pid ?? -1,
        restarts: Math.max(0, starts - 1),
        dump: dumps.get(name) as PluginDump,
      };
    },
    kill,
    close: stop,
  };
}
