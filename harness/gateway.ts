// startGateway: Kong start-up in miniature. kong/init.lua (3.9.3) init: load the declarative
// config, query every plugin server (process.lua), validate plugin configs against the
// dumped schemas (kong/db/schema/init.lua semantics), start the plugin servers, then serve.
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { ConfigError, readDeclarative } from './config/declarative';
import type { DeclarativeConfig } from './config/entities';
import {
  defaultErrorMessage,
  errorBody,
  errorConfFrom,
  errorHandlerType,
  type ErrorConf,
} from './errors';
import { addExitHook } from './exit-hooks';
import { KONG_SERVER } from './kong-headers';
import { parseNginxSize } from './nginx';
import { metaschemaViolations } from './config/metaschema';
import { configFieldsOf, validatePluginConfig } from './config/schema';
import { KEY_AUTH_PRIORITY, keyAuthConfigFields } from './keyauth';
import {
  postFunctionConfigFields,
  postFunctionPlugin,
  preFunctionConfigFields,
  preFunctionPlugin,
} from './post-function';
import {
  openTelemetryConfigErrors,
  openTelemetryConfigFields,
  openTelemetryPlugin,
} from './opentelemetry';
import { setClientBodyBufferSize } from './pdk/request';
import { ExternalPlugin } from './pluginserver/bridge';
import { PluginServerProcess, queryPluginInfo } from './pluginserver/process';
import { PluginTable, type LoadedPlugin } from './plugins';
import { Router } from './router';
import { Runloop } from './runloop';
import {
  CHAIN_DIR,
  chainQueryDir,
  CHAIN_PROCESS,
  isCoHosted,
  resolvePluginServerMode,
} from './pluginserver/layout';
import type { Gateway, GatewayOptions, PluginDump } from './types';

const BUNDLED = new Set(['key-auth', 'opentelemetry', 'post-function', 'pre-function']);

/** What the harness answers itself, beyond the Gateway interface (harness tests only). */
export interface HarnessGateway extends Gateway {
  /** Entries the runloop holds per request now (bounded: see Runloop.stats). */
  runloopSizes(): { stats: number; logWaiters: number };
  /**
   * A new declarative config while serving, as Kong's Admin API `POST /config` in DB-less mode
   * (the real Kong: kong.conf `admin_listen`); throws ConfigError and changes nothing when the
   * config is refused. The plugin servers stay; only plugins they serve may be used.
   */
  reload(config: string | object): Promise<void>;
}

/**
 * The kong.conf settings kong-runner gives every real Kong of the project (kong-runner/index.ts,
 * the compose stack sets the same): Kong's own errors in OpenAI's shape, JSON by default.
 * The harness starts from the same so both gateways answer alike; `kongConf` overrides.
 */
export const PROJECT_KONG_CONF: Record<string, string> = {
  error_default_type: 'application/json',
  // Kong's default is 0 (no limit): a chunked body of any size would be read into the plugin
  // servers. 8m is tenant-auth's largest max_body_bytes; larger bodies get nginx's 413.
  nginx_http_client_max_body_size: '8m',
  // Read the whole body before Kong's phases, so a body over that limit gets nginx's 413
  // there: read later inside a plugin's PDK call, nginx ends the request mid-call and the
  // plugin server's event never ends (kong-pdk holds it forever).
  nginx_proxy_lua_need_request_body: 'on',
  // Kong's access log format with the request line's query left out ($uri, not $request): a
  // key sent as `?apikey=` (refused by kong.yml's key-auth, key_in_query off) would otherwise be
  // written there verbatim, and query strings are the client's, not the operator's, to log.
  nginx_http_log_format: `kta_access '$remote_addr - $remote_user [$time_local] "$request_method $uri $server_protocol" $status $body_bytes_sent "$http_user_agent" kong_request_id: "$kong_request_id"'`,
  proxy_access_log: 'logs/access.log kta_access',
  // From harness/ (tsx) or dist/harness/ (compiled): the repository root holds package.json.
  error_template_json: resolvePath(
    __dirname,
    existsSync(join(__dirname, '..', 'package.json')) ? '..' : join('..', '..'),
    'docker',
    'error-template.json',
  ),
};

const MIRRORED_KONG_CONF = new Set([
  'nginx_http_client_max_body_size',
  'nginx_proxy_lua_need_request_body',
  'error_default_type',
  'error_template_json',
  'error_template_html',
  'error_template_xml',
  'error_template_plain',
]);

/**
 * nginx answers a request its parser refuses (ngx_http_request.c) with kong/error_handlers.lua
 * before any Kong phase: 400 "Bad request", or 494 sent as 400 "Request header or cookie too
 * large" when the head is too big. No header was parsed, so the type is error_default_type.
 * Node's parser (llhttp) refuses what nginx does not in a few cases (see docs/harness.md).
 */
function clientErrorResponse(code: string | undefined, errorConf: ErrorConf): string {
  const id = randomBytes(16).toString('hex');
  const status = code === 'HPE_HEADER_OVERFLOW' ? 494 : 400;
  const ct = errorHandlerType(undefined, undefined, errorConf.defaultType);
  const body = errorBody(ct, defaultErrorMessage(status), id, errorConf);
  return (
    `HTTP/1.1 400 Bad Request\r\nDate: ${new Date().toUTCString()}\r\nContent-Type: ${ct}\r\n` +
    `Connection: close\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Kong-Response-Latency: 0\r\n` +
    `Server: ${KONG_SERVER}\r\nX-Kong-Request-Id: ${id}\r\n\r\n${body}`
  );
}

export async function startGateway(
  opts: GatewayOptions & {
    clientBodyBufferSize?: number;
    /** How many requests' PDK statistics to keep (default 1000, the newest). */
    maxRequestStats?: number;
  },
): Promise<HarnessGateway> {
  const log = opts.logger ?? (() => undefined);
  if (opts.clientBodyBufferSize !== undefined) setClientBodyBufferSize(opts.clientBodyBufferSize);
  for (const k of Object.keys(opts.kongConf ?? {}))
    if (!MIRRORED_KONG_CONF.has(k))
      log(`[harness] kong.conf '${k}' is not mirrored by the harness`);
  const errorConf = errorConfFrom(
    { ...PROJECT_KONG_CONF, ...(opts.kongConf ?? {}) },
    (p) => readFileSync(p, 'utf8'),
    log,
  );
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
    const checkEnabled = (cfg: DeclarativeConfig): void => {
      for (const p of cfg.plugins) {
        if (!BUNDLED.has(p.name) && !(p.name in opts.pluginServers)) {
          problems.push(
            `plugin '${p.name}' ${p.scopeLabel}: plugin '${p.name}' not enabled; add it to the 'plugins' configuration property (pluginServers)`,
          );
        }
        if (p.name === 'key-auth' && p.consumer)
          problems.push(`plugin 'key-auth' ${p.scopeLabel}: consumer: value must be null`);
      }
    };
    checkEnabled(config);
    if (problems.length) throw new ConfigError(problems);

    const names = Object.keys(opts.pluginServers);
    const specs = names.map((name) => ({
      name,
      dir: resolvePath(opts.pluginServers[name] as string),
      prefix,
      env: opts.env ?? {},
      logger: log,
    }));
    // The plugin-server layout decides the phases Kong reads too: in the chain layout each
    // co-hosted plugin's query dumps it as the chain serves it (chain-query/<name>).
    const mode = resolvePluginServerMode(opts.pluginServerMode);
    const dumps = await Promise.all(
      specs.map((s) =>
        queryPluginInfo(isCoHosted(s.name, mode) ? { ...s, dir: chainQueryDir(s.name) } : s),
      ),
    );
    const dumpByName = new Map<string, PluginDump>();
    dumps.forEach((d, i) => {
      const declared = names[i] as string;
      if (d.Name !== declared)
        problems.push(`plugin server '${declared}' serves plugin '${d.Name}' (names must agree)`);
      dumpByName.set(d.Name, d);
    });

    // kong/init.lua init loads (and metaschema-checks) every enabled plugin's schema before
    // the declarative config: one bad schema and Kong does not start.
    const schemaProblems = dumps.flatMap((d) =>
      metaschemaViolations(d.Name, configFieldsOf(d.Schema ?? { fields: [] })),
    );
    if (schemaProblems.length) throw new Error(schemaProblems.join('\n'));

    const validate = (cfg: DeclarativeConfig): void => {
      for (const p of cfg.plugins) {
        const fields =
          p.name === 'key-auth'
            ? keyAuthConfigFields
            : p.name === 'post-function'
              ? postFunctionConfigFields
              : p.name === 'pre-function'
                ? preFunctionConfigFields
                : p.name === 'opentelemetry'
                  ? openTelemetryConfigFields
                  : configFieldsOf(dumpByName.get(p.name)?.Schema ?? { fields: [] });
        const r = validatePluginConfig(fields, p.rawConfig);
        if (p.name === 'opentelemetry' && r.errors.length === 0)
          r.errors.push(...openTelemetryConfigErrors(r.value));
        r.notes.forEach((n) => log(`[harness] plugin '${p.name}' ${p.scopeLabel}: ${n}`));
        r.errors.forEach((e) => problems.push(`plugin '${p.name}' ${p.scopeLabel}: ${e}`));
        p.config = r.value;
      }
    };
    validate(config);
    if (problems.length) throw new ConfigError(problems);

    const loaded: LoadedPlugin[] = [
      {
        name: 'key-auth',
        priority: KEY_AUTH_PRIORITY,
        phases: new Set(['access']),
        noConsumer: true,
      },
      postFunctionPlugin,
      preFunctionPlugin,
      openTelemetryPlugin,
    ];
    const externals = new Map<string, ExternalPlugin>();
    // One process per plugin, or one co-hosted process for every plugin of the chain
    // (harness/pluginserver/layout.ts), as Kong runs them with docker/kong-pluginservers.sh.
    const started = new Map<string, Promise<PluginServerProcess>>();
    const processFor = (spec: (typeof specs)[number]): Promise<PluginServerProcess> => {
      const coHosted = isCoHosted(spec.name, mode);
      const key = coHosted ? CHAIN_PROCESS : spec.name;
      let proc = started.get(key);
      if (!proc) {
        const p = new PluginServerProcess(
          coHosted ? { ...spec, name: CHAIN_PROCESS, dir: CHAIN_DIR } : spec,
        );
        procs.push(p);
        const timeout = new Promise<never>((_, reject) =>
          setTimeout(
            () =>
              reject(
                new Error(`plugin server '${key}' did not listen on ${p.socketPath} within 30 s`),
              ),
            30000,
          ).unref(),
        );
        proc = Promise.race([p.start(), timeout]).then(() => p);
        started.set(key, proc);
      }
      return proc;
    };
    await Promise.all(
      specs.map(async (spec, i) => {
        const dump = dumps[i] as PluginDump;
        const proc = await processFor(spec);
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
      errorConf,
      clientMaxBodySize: parseNginxSize(
        { ...PROJECT_KONG_CONF, ...(opts.kongConf ?? {}) }.nginx_http_client_max_body_size,
        Infinity,
      ),
      maxRequestStats: opts.maxRequestStats,
    });
    // A head up to 64 KB reaches the runloop, which applies nginx's own limits (harness/nginx.ts:
    // 4 x 8k buffers, 1000 lines); the Host check is nginx's too. Beyond that, Node's parser
    // refuses, answered as nginx would.
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
      runloop.handle(req, res).catch((e: unknown) => {
        log(`[harness] request failed: ${(e as Error).stack ?? String(e)}`);
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    };
    const server: Server = createServer(
      { maxHeaderSize: 65536, requireHostHeader: false },
      onRequest,
    );
    // Node answers an Expect other than 100-continue with 417 by itself; nginx ignores it
    // (and refuses a repeated Expect, harness/nginx.ts): the runloop decides.
    server.on('checkExpectation', onRequest);
    server.maxHeadersCount = 0;
    // Kong's client keep-alive: nginx's keepalive_timeout (75 s, Kong sets none) and Kong's
    // nginx_http_keepalive_requests (10000). Node's own 5 s closed idle client connections that
    // Kong keeps open: a keep-alive client reusing one as it closed got a reset here only.
    server.keepAliveTimeout = 75_000;
    server.maxRequestsPerSocket = 10_000;
    server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      if (socket.writable) socket.end(clientErrorResponse(err.code, errorConf));
      else socket.destroy();
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
      requestStats: (id) => runloop.stats.get(id),
      runloopSizes: () => runloop.sizes(),
      logDone: (id) => runloop.logDone(id),
      pluginServerInfo: (name) => {
        const ext = externals.get(name);
        if (!ext) throw new Error(`no plugin server '${name}'`);
        return { pid: ext.proc.pid, restarts: ext.proc.restarts, dump: ext.dump };
      },
      reload: async (next) => {
        // Kong's Admin API POST /config (DB-less): the new config is checked whole, then every
        // later request routes and runs plugins by it; plugin instances start again (Kong sees a
        // new config sequence). Requests already in their phases finish on what they began with.
        const cfg = readDeclarative(next);
        problems.length = 0;
        checkEnabled(cfg);
        validate(cfg);
        if (problems.length) throw new ConfigError([...problems]);
        runloop.reconfigure({
          config: cfg,
          plugins: new PluginTable(loaded, cfg),
          router: new Router(cfg.routes, cfg.services),
        });
        externals.forEach((e) => e.resetInstances());
      },
      kill: async () => {
        // No more RPC from this node: phases still pending (log of requests in flight) fail.
        externals.forEach((e) => e.rpc.close());
        await Promise.all(procs.map((p) => p.killNow()));
        server.close();
        server.closeAllConnections();
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
