// startGateway: Kong start-up in miniature. kong/init.lua (3.9.3) init: load the declarative
// config, query every plugin server (process.lua), validate plugin configs against the
// dumped schemas (kong/db/schema/init.lua semantics), start the plugin servers, then serve.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { ConfigError, readDeclarative } from './config/declarative';
import { addExitHook } from './exit-hooks';
import { configFieldsOf, validatePluginConfig } from './config/schema';
import { KEY_AUTH_PRIORITY, keyAuthConfigFields } from './keyauth';
import { postFunctionConfigFields, postFunctionPlugin } from './post-function';
import { setClientBodyBufferSize } from './pdk/request';
import { ExternalPlugin } from './pluginserver/bridge';
import { PluginServerProcess, queryPluginInfo } from './pluginserver/process';
import { PluginTable, type LoadedPlugin } from './plugins';
import { Router } from './router';
import { Runloop } from './runloop';
import type { Gateway, GatewayOptions, PluginDump } from './types';

const BUNDLED = new Set(['key-auth', 'post-function']);

export async function startGateway(
  opts: GatewayOptions & { clientBodyBufferSize?: number },
): Promise<Gateway> {
  const log = opts.logger ?? (() => undefined);
  if (opts.clientBodyBufferSize !== undefined) setClientBodyBufferSize(opts.clientBodyBufferSize);
  const config = readDeclarative(opts.config);
  const ownPrefix = opts.prefix === undefined;
  const prefix = opts.prefix ?? mkdtempSync(join(tmpdir(), 'kong-harness-'));
  const procs: PluginServerProcess[] = [];
  // If this process exits without close(), SIGTERM every plugin server started here (as Kong's
  // stop_pluginservers does) instead of leaving orphans; close() removes the hook.
  const removeExitHook = addExitHook(() => {
    procs.forEach((p) => p.terminateNow());
    if (ownPrefix) rmSync(prefix, { recursive: true, force: true });
  });
  const cleanup = async () => {
    removeExitHook();
    await Promise.all(procs.map((p) => p.stop()));
    if (ownPrefix) rmSync(prefix, { recursive: true, force: true });
  };
  try {
    // Plugins used in kong.yml must be enabled (bundled or an external plugin server).
    const problems: string[] = [];
    for (const p of config.plugins) {
      if (!BUNDLED.has(p.name) && !(p.name in opts.pluginServers)) {
        problems.push(
          `plugin '${p.name}' ${p.scopeLabel}: plugin '${p.name}' not enabled; add it to the 'plugins' configuration property (pluginServers)`,
        );
      }
      if (p.name === 'key-auth' && p.consumer)
        problems.push(`plugin 'key-auth' ${p.scopeLabel}: consumer: value must be null`);
    }
    if (problems.length) throw new ConfigError(problems);

    const names = Object.keys(opts.pluginServers);
    const specs = names.map((name) => ({
      name,
      dir: resolvePath(opts.pluginServers[name] as string),
      prefix,
      env: opts.env ?? {},
      logger: log,
    }));
    const dumps = await Promise.all(specs.map((s) => queryPluginInfo(s)));
    const dumpByName = new Map<string, PluginDump>();
    dumps.forEach((d, i) => {
      const declared = names[i] as string;
      if (d.Name !== declared)
        problems.push(`plugin server '${declared}' serves plugin '${d.Name}' (names must agree)`);
      dumpByName.set(d.Name, d);
    });

    for (const p of config.plugins) {
      const fields =
        p.name === 'key-auth'
          ? keyAuthConfigFields
          : p.name === 'post-function'
            ? postFunctionConfigFields
            : configFieldsOf(dumpByName.get(p.name)?.Schema ?? { fields: [] });
      const r = validatePluginConfig(fields, p.rawConfig);
      r.notes.forEach((n) => log(`[harness] plugin '${p.name}' ${p.scopeLabel}: ${n}`));
      r.errors.forEach((e) => problems.push(`plugin '${p.name}' ${p.scopeLabel}: ${e}`));
      p.config = r.value;
    }
    if (problems.length) throw new ConfigError(problems);

    const loaded: LoadedPlugin[] = [
      {
        name: 'key-auth',
        priority: KEY_AUTH_PRIORITY,
        phases: new Set(['access']),
        noConsumer: true,
      },
      postFunctionPlugin,
    ];
    const externals = new Map<string, ExternalPlugin>();
    await Promise.all(
      specs.map(async (spec, i) => {
        const dump = dumps[i] as PluginDump;
        const proc = new PluginServerProcess(spec);
        procs.push(proc);
        const ready = proc.start();
        const timeout = new Promise<never>((_, reject) =>
          setTimeout(
            () =>
              reject(
                new Error(
                  `plugin server '${spec.name}' did not listen on ${proc.socketPath} within 30 s`,
                ),
              ),
            30000,
          ).unref(),
        );
        await Promise.race([ready, timeout]);
        const ext = new ExternalPlugin(dump, proc, log);
        externals.set(spec.name, ext);
        loaded.push({
          name: dump.Name,
          priority: dump.Priority,
          phases: new Set(dump.Phases),
          noConsumer: false,
          external: ext,
        });
      }),
    );

    let port = 0;
    const runloop = new Runloop({
      config,
      plugins: new PluginTable(loaded, config),
      router: new Router(config.routes, config.services),
      nodeId: randomUUID(),
      serverPort: () => port,
      log,
    });
    const server: Server = createServer((req, res) => {
      runloop.handle(req, res).catch((e: unknown) => {
        log(`[harness] request failed: ${(e as Error).stack ?? String(e)}`);
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
    const host = opts.host ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, host, () => resolve());
    });
    port = (server.address() as AddressInfo).port;
    log(`[harness] Kong 3.9.3 harness listening on http://${host}:${port}`);

    return {
      url: `http://${host}:${port}`,
      port,
      requestStats: (id) => runloop.stats.get(id)?.stats,
      logDone: (id) => runloop.logDone(id),
      pluginServerInfo: (name) => {
        const ext = externals.get(name);
        if (!ext) throw new Error(`no plugin server '${name}'`);
        return { pid: ext.proc.pid, restarts: ext.proc.restarts, dump: ext.dump };
      },
      close: async () => {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        externals.forEach((e) => e.rpc.close());
        await cleanup();
      },
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
