// One request through the gateway, phase by phase, as kong/init.lua (3.9.3) runs it:
// rewrite (global plugins, execute_global_plugins_iterator: an error is a 500 from the error
// handler) -> router (404 "no Route matched with those values") -> access
// (execute_collecting_plugins_iterator: configs collected per plugin as it is reached, an exit
// or error delays the response and skips the remaining access handlers but not collection)
// -> proxy -> response (Kong.response: buffered, only when a collected plugin has `response`
// or buffering was enabled) -> header_filter headers -> log (plugin.lua: from a timer, on a snapshot).
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { DeclarativeConfig, PluginEntity } from './config/entities';
import type { ErrorConf } from './errors';
import { headerMapFromRaw, type HeaderMap } from './headers';
import { bodyFilterOf, handlerError, pdkError, readBody, refuseEarly, send } from './downstream';
import { keyAuthAccess } from './keyauth';
import { accessCode, runAccess } from './post-function';
import { addKongResponseHeaders } from './kong-headers';
import {
  dropInvalidHeaders,
  bodyLimitRefusal,
  nginxRefusal,
  normalizePath,
  escapeUri,
  parseTarget,
} from './nginx';
import { ExitSignal, KongLuaError, normalizeHeaderValues, type PdkEnv } from './pdk/core';
import type { LoadedPlugin, PluginTable } from './plugins';
import { proxyToService, readUpstreamBody } from './proxy';
import { RequestState, type DownstreamResponse, type KongPhase } from './request-state';
import { Router, upstreamUriV0 } from './router';
import { buildSerialize } from './serialize';
import type { RequestStats } from './types';

export interface RunloopDeps {
  config: DeclarativeConfig;
  plugins: PluginTable;
  router: Router;
  nodeId: string;
  serverPort: () => number;
  log: (line: string) => void;
  errorConf: ErrorConf;
  /** nginx client_max_body_size in bytes (Infinity: no limit). */
  clientMaxBodySize: number;
  /** How many requests' PDK statistics to keep (default MAX_REQUEST_STATS). */
  maxRequestStats?: number;
}

type Collected = { plugin: LoadedPlugin; entity: PluginEntity };
type Outcome = 'ret' | 'exit' | 'kong-error';

/** How many requests' PDK statistics the harness keeps by default (the newest ones). */
export const MAX_REQUEST_STATS = 1000;

export class Runloop {
  /** Log phases still running, by request id; an entry goes when its log phase ends. */
  private readonly logWaiters = new Map<string, Promise<void>>();
  /**
   * PDK statistics of the last `maxRequestStats` requests (a Map iterates in insertion order:
   * the oldest is dropped first). Only the counters are kept, never the request itself, so a
   * gateway serving for days holds a bounded amount (issue 7 item 8: 11 KB per request before).
   */
  readonly stats = new Map<string, RequestStats>();
  private readonly maxStats: number;

  constructor(private readonly deps: RunloopDeps) {
    this.maxStats = Math.max(1, deps.maxRequestStats ?? MAX_REQUEST_STATS);
  }

  /** A new config (Gateway.reload): later requests route and run plugins by it. */
  reconfigure(next: Pick<RunloopDeps, 'config' | 'plugins' | 'router'>): void {
    this.deps.config = next.config;
    this.deps.plugins = next.plugins;
    this.deps.router = next.router;
  }

  logDone(id: string): Promise<void> {
    return this.logWaiters.get(id) ?? Promise.resolve();
  }

  /** Entries held per request now: for the memory-bound test. */
  sizes(): { stats: number; logWaiters: number } {
    return { stats: this.stats.size, logWaiters: this.logWaiters.size };
  }

  private remember(id: string, stats: RequestStats): void {
    this.stats.set(id, stats);
    while (this.stats.size > this.maxStats) {
      const oldest = this.stats.keys().next();
      if (oldest.done) break;
      this.stats.delete(oldest.value);
    }
  }

  private env(st: RequestState, plugin: LoadedPlugin, phase: KongPhase): PdkEnv {
    return {
      pluginName: plugin.name,
      phase,
      config: this.deps.config,
      nodeId: this.deps.nodeId,
      log: this.deps.log,
    };
  }

  private async runPlugin(st: RequestState, c: Collected, phase: KongPhase): Promise<Outcome> {
    st.phase = phase;
    const env = this.env(st, c.plugin, phase);
    if (c.plugin.external) return c.plugin.external.handleEvent(st, c.entity, env);
    if (
      (c.plugin.name === 'pre-function' || c.plugin.name === 'post-function') &&
      phase === 'access'
    ) {
      const code = accessCode(c.entity.config);
      if (!code) return 'ret';
      const key = `${c.plugin.name}:${c.entity.id}:${createHash('sha1').update(code.join('\0')).digest('hex')}`;
      return runAccess(key, code, st, env);
    }
    try {
      if (c.plugin.name === 'key-auth' && phase === 'access')
        keyAuthAccess(st, c.entity.config, this.deps.config, env);
      return 'ret';
    } catch (e) {
      if (e instanceof ExitSignal) return 'exit';
      if (e instanceof KongLuaError) {
        st.stats.pdkErrors.push(`${c.plugin.name} ${phase}: ${e.message}`);
        return 'kong-error';
      }
      throw e;
    }
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const startTime = Date.now();
    const id = randomBytes(16).toString('hex');
    const target = req.url ?? '/';
    const refusal = nginxRefusal({
      method: req.method ?? '',
      target,
      httpVersion: req.httpVersion,
      rawHeaders: req.rawHeaders,
    });
    const parsed = parseTarget(target);
    if (refusal || !parsed) {
      await refuseEarly(
        this.deps,
        req,
        res,
        id,
        startTime,
        refusal ?? { status: 400, reason: 'bad target' },
      );
      return;
    }
    const declaredLength = req.headers['transfer-encoding']
      ? undefined
      : Number(req.headers['content-length'] ?? '0');
    const early = bodyLimitRefusal(declaredLength, 0, this.deps.clientMaxBodySize);
    if (early) {
      await refuseEarly(this.deps, req, res, id, startTime, early);
      return;
    }
    const body = await readBody(req);
    const late = bodyLimitRefusal(undefined, body.length, this.deps.clientMaxBodySize);
    if (late) {
      await refuseEarly(this.deps, req, res, id, startTime, late);
      return;
    }
    const st = new RequestState(
      id,
      startTime,
      req.method ?? 'GET',
      parsed.path,
      parsed.query,
      headerMapFromRaw(dropInvalidHeaders(req.rawHeaders)),
      body,
      (req.socket.remoteAddress ?? '127.0.0.1').replace(/^::ffff:/, ''),
      req.socket.remotePort ?? 0,
      this.deps.serverPort(),
      req.httpVersion,
      parsed.host,
    );
    st.errorConf = this.deps.errorConf;
    st.upstream = {
      method: st.method,
      path: st.rawPath,
      query: st.rawQuery ?? '',
      headers: new Map(st.headers),
      body,
    };
    this.remember(id, st.stats);
    let logResolve: () => void = () => undefined;
    this.logWaiters.set(id, new Promise((r) => (logResolve = r)));

    let collected: Collected[] | undefined;
    let final: Awaited<ReturnType<Runloop['phases']>>;
    try {
      final = await this.phases(st, (c) => (collected = c));
      addKongResponseHeaders(st, final.response.headers);
      await send(st, res, final, bodyFilterOf(collected));
    } catch (e) {
      // No log phase will run: nobody may wait on it, and nothing stays behind.
      this.logWaiters.delete(id);
      logResolve();
      throw e;
    }
    // Kong.log -> plugin.lua: each plugin's log handler runs in its own timer on a snapshot.
    st.response ??= {
      status: final.response.status,
      headers: final.response.headers,
      body: Buffer.alloc(0),
    };
    st.phase = 'log';
    st.inLogTimer = true;
    let logPlugins = (collected ?? this.deps.plugins.globals('log')).filter((c) =>
      c.plugin.phases.has('log'),
    );
    try {
      st.savedSerialize = buildSerialize(st);
    } catch (e) {
      // plugin.lua build_phases calls kong.log.serialize() before scheduling the timer: a
      // serialize error (a bad set_serialize_value key) is a Lua error in Kong.log, so no
      // external plugin's log handler runs for this request.
      this.deps.log(`[kong] error ${(e as Error).message}`);
      st.stats.pdkErrors.push(`log: kong.log.serialize: ${(e as Error).message}`);
      logPlugins = [];
    }
    void Promise.all(logPlugins.map((c) => this.runPlugin(st, c, 'log')))
      .catch((e: unknown) => this.deps.log(`[harness] log phase failed: ${String(e)}`))
      .finally(() => {
        this.logWaiters.delete(id);
        logResolve();
      });
  }

  private async phases(
    st: RequestState,
    setCollected: (c: Collected[]) => void,
  ): Promise<{ response: DownstreamResponse; stream?: IncomingMessage }> {
    // rewrite
    for (const c of this.deps.plugins.globals('rewrite')) {
      const o = await this.runPlugin(st, c, 'rewrite');
      if (o === 'exit' && st.exitResponse) return { response: st.exitResponse };
      if (o === 'kong-error') {
        st.unexpected = true;
        return { response: handlerError(st, 500) };
      }
    }
    // router (runloop access.before)
    st.phase = 'access';
    // kong/router/atc.lua exec: the router sees strip_uri_args(request_uri), i.e. the path
    // normalized by kong/tools/uri.lua (dot segments, `//`, %XX of unreserved characters).
    const path = normalizePath(st.rawPath);
    const match = this.deps.router.match(st.method, st.host, path);
    if (!match) return { response: pdkError(st, 404, 'no Route matched with those values') };
    st.route = match.route;
    st.service = match.service;
    // match_t.prefix is set only for strip_path routes (kong/router/atc.lua matching), and
    // X-Forwarded-Prefix follows it (kong/runloop/handler.lua access.after).
    st.matchedPrefix =
      match.route.paths?.length && match.route.strip_path ? match.prefix : undefined;
    if (st.service) {
      // kong/runloop/handler.lua: var.upstream_uri = escape(match_t.upstream_uri)
      st.upstream.path = escapeUri(
        upstreamUriV0(match.route, match.postfix, path, st.service.path ?? '/'),
      );
    }
    // access, collecting
    const collected: Collected[] = [];
    setCollected(collected);
    let delayed: DownstreamResponse | undefined;
    for (const plugin of this.deps.plugins.loaded) {
      const consumerId = typeof st.consumer?.id === 'string' ? st.consumer.id : undefined;
      const entity = this.deps.plugins.lookup(plugin, st.route.id, st.service?.id, consumerId);
      if (!entity) continue;
      collected.push({ plugin, entity });
      if (plugin.phases.has('response')) st.bufferedProxying = true;
      if (delayed || !plugin.phases.has('access')) continue;
      const o = await this.runPlugin(st, { plugin, entity }, 'access');
      if (o === 'exit' && st.exitResponse) delayed = st.exitResponse;
      if (o === 'kong-error') {
        st.unexpected = true;
        delayed = pdkError(st, 500, 'An unexpected error occurred');
      }
    }
    if (delayed) return { response: delayed };
    if (!st.service) return { response: pdkError(st, 503, 'no Service found with those values') };
    // proxy
    st.proxied = true;
    st.proxyLatency = Date.now() - st.startTime;
    const result = await proxyToService(st);
    if (result.kind === 'error') {
      this.deps.log(`[harness] upstream error: ${result.reason}`);
      st.serviceResponse = { status: result.status, headers: new Map() };
      // nginx's error_page 502/504 -> /kong_error_handler -> Kong.handle_error, which sets
      // ctx.KONG_UNEXPECTED (kong/init.lua 3.9.3): kong.response.get_source() says "error".
      st.unexpected = true;
      return { response: handlerError(st, result.status) };
    }
    st.upstreamLatency = result.waitingMs;
    const upstreamHeaders = headerMapFromRaw(result.res.rawHeaders);
    for (const h of ['connection', 'keep-alive', 'transfer-encoding', 'date'])
      upstreamHeaders.delete(h);
    // The upstream status replaces one set with kong.response.set_status in access: nginx
    // ngx_http_upstream_process_headers (r->headers_out.status = u->headers_in.status_n) when
    // streaming, kong/init.lua (3.9.3) Kong.response kong.response.set_status(status) when buffered.
    const status = result.res.statusCode ?? 502;
    st.serviceResponse = { status, headers: new Map(upstreamHeaders) };
    if (!st.bufferedProxying) {
      // Streaming (not mirrored exactly): here an access-set header replaces the upstream's
      // on the same name; nginx's ngx_http_upstream_copy_header_line would append the
      // upstream line after it (both sent) and replace only single headers such as
      // Content-Type. See docs/harness.md.
      const headers: HeaderMap = new Map(upstreamHeaders);
      for (const [k, v] of st.pendingResponseHeaders) headers.set(k, v);
      // nginx passes the upstream's Content-Length on (and chunks only what came chunked).
      return { response: { status, headers, body: Buffer.alloc(0) }, stream: result.res };
    }
    // kong/init.lua (3.9.3) Kong.response: kong.response.set_headers(res.header) runs after
    // access, so on a name both set the upstream's value replaces what access set with
    // kong.response.set_header; other access-set headers stay (ngx.header keeps them in place).
    // set_headers passes values through normalize_multi_header ("" -> " ").
    const headers: HeaderMap = new Map(st.pendingResponseHeaders);
    for (const [k, v] of upstreamHeaders) headers.set(k, normalizeHeaderValues(v));
    const full = await readUpstreamBody(result.res, st.service.read_timeout);
    if (full === 'error') {
      // Cut after its status line: kong/init.lua (3.9.3) Kong.response sees res.truncated,
      // keeps the upstream's status (ngx.status = res.status) and calls kong/error_handlers.lua,
      // which answers with kong.response.exit: a 200 saying "The upstream server responded with
      // 200", and kong.response.get_source() says "exit" (KONG_EXITED), not "error".
      st.exited = true;
      return { response: handlerError(st, status) };
    }
    if (full === 'timeout') {
      st.unexpected = true; // the error handler answers, as above
      return { response: handlerError(st, 504) };
    }
    st.serviceResponse.body = full;
    st.response = { status, headers, body: full };
    for (const c of collected.filter((x) => x.plugin.phases.has('response'))) {
      const o = await this.runPlugin(st, c, 'response');
      if (o === 'exit' && st.exitResponse) return { response: st.exitResponse };
      if (o === 'kong-error') {
        st.unexpected = true;
        return { response: handlerError(st, 500) };
      }
    }
    st.response.headers.set('content-length', [String(st.response.body.length)]);
    return { response: st.response };
  }
}
