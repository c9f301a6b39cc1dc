// One request through the gateway, phase by phase, as kong/init.lua (3.9.3) runs it:
// rewrite (global plugins, execute_global_plugins_iterator: an error is a 500 from the error
// handler) -> router (404 "no Route matched with those values") -> access
// (execute_collecting_plugins_iterator: configs collected per plugin as it is reached, an exit
// or error delays the response and skips the remaining access handlers but not collection)
// -> proxy -> response (Kong.response: buffered, only when a collected plugin has `response`
// or buffering was enabled) -> header_filter headers -> log (plugin.lua: from a timer, on a snapshot).
import { createHash, randomBytes } from 'node:crypto';
import { Transform } from 'node:stream';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { DeclarativeConfig, PluginEntity } from './config/entities';
import { defaultErrorMessage, errorBody, errorHandlerType, responseType } from './errors';
import { headerMapFromRaw, joinedHeader, type HeaderMap } from './headers';
import { keyAuthAccess } from './keyauth';
import { bodyFilterCode, runBodyFilter } from './post-function';
import { addKongResponseHeaders } from './kong-headers';
import { ExitSignal, KongLuaError, normalizeHeaderValues, type PdkEnv } from './pdk/core';
import { buildExit } from './pdk/response';
import type { LoadedPlugin, PluginTable } from './plugins';
import { proxyToService, readUpstreamBody } from './proxy';
import { RequestState, type DownstreamResponse, type KongPhase } from './request-state';
import { Router, upstreamUriV0 } from './router';
import { buildSerialize } from './serialize';

export interface RunloopDeps {
  config: DeclarativeConfig;
  plugins: PluginTable;
  router: Router;
  nodeId: string;
  serverPort: () => number;
  log: (line: string) => void;
}

type Collected = { plugin: LoadedPlugin; entity: PluginEntity };
type Outcome = 'ret' | 'exit' | 'kong-error';

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export class Runloop {
  private readonly logWaiters = new Map<string, Promise<void>>();
  readonly stats = new Map<string, RequestState>();

  constructor(private readonly deps: RunloopDeps) {}

  logDone(id: string): Promise<void> {
    return this.logWaiters.get(id) ?? Promise.resolve();
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

  /** kong.response.error through the PDK (JSON by Accept, default JSON). */
  private pdkError(st: RequestState, status: number, message: string): DownstreamResponse {
    const ct = responseType(joinedHeader(st.upstream.headers, 'accept'));
    st.exited = true;
    return buildExit(status, errorBody(ct, message, st.id), new Map([['content-type', [ct]]]));
  }

  /** kong/error_handlers.lua: Accept, else Content-Type, else text/plain. */
  private handlerError(st: RequestState, status: number): DownstreamResponse {
    const ct = errorHandlerType(
      joinedHeader(st.upstream.headers, 'accept'),
      joinedHeader(st.upstream.headers, 'content-type'),
    );
    return buildExit(
      status,
      errorBody(ct, defaultErrorMessage(status), st.id),
      new Map([['content-type', [ct]]]),
    );
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const startTime = Date.now();
    const id = randomBytes(16).toString('hex');
    const body = await readBody(req);
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const st = new RequestState(
      id,
      startTime,
      req.method ?? 'GET',
      q < 0 ? url : url.slice(0, q),
      q < 0 ? undefined : url.slice(q + 1),
      headerMapFromRaw(req.rawHeaders),
      body,
      (req.socket.remoteAddress ?? '127.0.0.1').replace(/^::ffff:/, ''),
      req.socket.remotePort ?? 0,
      this.deps.serverPort(),
      req.httpVersion,
    );
    st.upstream = {
      method: st.method,
      path: st.rawPath,
      query: st.rawQuery ?? '',
      headers: new Map(st.headers),
      body,
    };
    this.stats.set(id, st);
    let logResolve: () => void = () => undefined;
    this.logWaiters.set(id, new Promise((r) => (logResolve = r)));

    let collected: Collected[] | undefined;
    const final = await this.phases(st, (c) => (collected = c));
    addKongResponseHeaders(st, final.response.headers);
    await this.send(st, res, final, this.bodyFilter(collected));
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
      .finally(() => logResolve());
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
        return { response: this.handlerError(st, 500) };
      }
    }
    // router (runloop access.before)
    st.phase = 'access';
    const match = this.deps.router.match(st.method, st.host, st.rawPath);
    if (!match) return { response: this.pdkError(st, 404, 'no Route matched with those values') };
    st.route = match.route;
    st.service = match.service;
    st.matchedPrefix = match.route.paths?.length ? match.prefix : undefined;
    if (st.service) {
      st.upstream.path = upstreamUriV0(
        match.route,
        match.postfix,
        st.rawPath,
        st.service.path ?? '/',
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
        delayed = this.pdkError(st, 500, 'An unexpected error occurred');
      }
    }
    if (delayed) return { response: delayed };
    if (!st.service)
      return { response: this.pdkError(st, 503, 'no Service found with those values') };
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
      return { response: this.handlerError(st, result.status) };
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
      headers.delete('content-length');
      return { response: { status, headers, body: Buffer.alloc(0) }, stream: result.res };
    }
    // kong/init.lua (3.9.3) Kong.response: kong.response.set_headers(res.header) runs after
    // access, so on a name both set the upstream's value replaces what access set with
    // kong.response.set_header; other access-set headers stay (ngx.header keeps them in place).
    // set_headers passes values through normalize_multi_header ("" -> " ").
    const headers: HeaderMap = new Map(st.pendingResponseHeaders);
    for (const [k, v] of upstreamHeaders) headers.set(k, normalizeHeaderValues(v));
    const full = await readUpstreamBody(result.res, st.service.read_timeout);
    if (full === 'timeout' || full === 'error') {
      st.unexpected = true; // the error handler answers, as above
      return { response: this.handlerError(st, full === 'timeout' ? 504 : 502) };
    }
    st.serviceResponse.body = full;
    st.response = { status, headers, body: full };
    for (const c of collected.filter((x) => x.plugin.phases.has('response'))) {
      const o = await this.runPlugin(st, c, 'response');
      if (o === 'exit' && st.exitResponse) return { response: st.exitResponse };
      if (o === 'kong-error') {
        st.unexpected = true;
        return { response: this.handlerError(st, 500) };
      }
    }
    st.response.headers.set('content-length', [String(st.response.body.length)]);
    return { response: st.response };
  }

  /**
   * The body_filter of a collected post-function (the only Lua plugin with one here), run
   * per chunk and once with eof, as nginx calls it: see post-function.ts.
   */
  private bodyFilter(
    collected: Collected[] | undefined,
  ): ((st: RequestState, chunk: Buffer, eof: boolean) => Promise<void>) | undefined {
    const pf = collected?.find((c) => c.plugin.name === 'post-function');
    const code = pf ? bodyFilterCode(pf.entity.config) : undefined;
    if (!pf || !code) return undefined;
    const key = `${pf.entity.id}:${createHash('sha1').update(code.join('\0')).digest('hex')}`;
    return (st, chunk, eof) => runBodyFilter(key, code, st, chunk, eof);
  }

  private send(
    st: RequestState,
    res: ServerResponse,
    final: { response: DownstreamResponse; stream?: IncomingMessage },
    filter?: (st: RequestState, chunk: Buffer, eof: boolean) => Promise<void>,
  ): Promise<void> {
    st.response = final.response;
    st.phase = 'header_filter';
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of final.response.headers) headers[k] = v.length === 1 ? (v[0] as string) : v;
    return new Promise((resolve) => {
      // Resolved when the client got everything and the last body_filter call ran.
      let filtered: Promise<void> = Promise.resolve();
      const done = (): void => void filtered.finally(() => resolve());
      res.once('finish', done);
      res.once('close', done);
      res.writeHead(final.response.status, headers);
      if (final.stream) {
        const source = final.stream;
        if (filter) {
          // Each chunk goes to the client as it comes; body_filter sees it on the way.
          const tap = new Transform({
            transform(chunk: Buffer, _enc, cb) {
              filtered = filtered.then(() => filter(st, chunk, false));
              filtered.then(
                () => cb(null, chunk),
                (e: unknown) => cb(e as Error),
              );
            },
            flush(cb) {
              filtered = filtered.then(() => filter(st, Buffer.alloc(0), true));
              filtered.then(
                () => cb(),
                (e: unknown) => cb(e as Error),
              );
            },
          });
          source.pipe(tap).pipe(res);
          tap.on('error', () => res.destroy());
        } else source.pipe(res);
        source.on('error', () => res.destroy());
      } else if (filter) {
        filtered = filter(st, final.response.body, true);
        void filtered.then(
          () => res.end(final.response.body),
          () => res.end(final.response.body),
        );
      } else res.end(final.response.body);
    });
  }
}
