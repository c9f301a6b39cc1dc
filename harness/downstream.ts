// What goes back to the client, as Kong 3.9.3 sends it: the error bodies (the PDK's
// kong.response.error, kong/error_handlers.lua, nginx's own refusals before Kong runs), the
// response with post-function's body_filter on the way, and the request body read whole.
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PluginEntity } from './config/entities';
import {
  defaultErrorMessage,
  errorBody,
  errorHandlerType,
  responseType,
  type ErrorConf,
} from './errors';
import { headerMapFromRaw, joinedHeader } from './headers';
import { KONG_SERVER } from './kong-headers';
import type { NginxRefusal } from './nginx';
import { buildExit } from './pdk/response';
import type { LoadedPlugin } from './plugins';
import { bodyFilterCode, runBodyFilter } from './post-function';
import type { DownstreamResponse, RequestState } from './request-state';

export function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** kong.response.error through the PDK (JSON by Accept, default JSON). */
export function pdkError(st: RequestState, status: number, message: string): DownstreamResponse {
  const ct = responseType(joinedHeader(st.upstream.headers, 'accept'));
  st.exited = true;
  return buildExit(
    status,
    errorBody(ct, message, st.id, st.errorConf),
    new Map([['content-type', [ct]]]),
  );
}

/** kong/error_handlers.lua: Accept, else Content-Type, else text/plain. */
export function handlerError(st: RequestState, status: number): DownstreamResponse {
  const ct = errorHandlerType(
    joinedHeader(st.upstream.headers, 'accept'),
    joinedHeader(st.upstream.headers, 'content-type'),
    st.errorConf.defaultType,
  );
  return buildExit(
    status,
    errorBody(ct, defaultErrorMessage(status), st.id, st.errorConf),
    new Map([['content-type', [ct]]]),
  );
}

/**
 * A request nginx refuses before Kong runs (harness/nginx.ts): kong/error_handlers.lua
 * renders it (494 sent as 400), with the headers header_filter adds to a Kong response;
 * the connection closes. No plugin runs.
 */
export async function refuseEarly(
  deps: { log: (line: string) => void; errorConf: ErrorConf },
  req: IncomingMessage,
  res: ServerResponse,
  id: string,
  startTime: number,
  refusal: NginxRefusal,
): Promise<void> {
  deps.log(`[nginx] ${refusal.reason}, request id ${id}`);
  const headers = headerMapFromRaw(req.rawHeaders);
  const ct = errorHandlerType(
    joinedHeader(headers, 'accept'),
    joinedHeader(headers, 'content-type'),
    deps.errorConf.defaultType,
  );
  const body = errorBody(ct, defaultErrorMessage(refusal.status), id, deps.errorConf);
  req.resume();
  await new Promise<void>((resolve) => {
    res.once('close', () => resolve());
    res.writeHead(refusal.status === 494 ? 400 : refusal.status, {
      'content-type': ct,
      connection: 'close',
      'content-length': String(Buffer.byteLength(body)),
      'x-kong-response-latency': String(Date.now() - startTime),
      server: KONG_SERVER,
      'x-kong-request-id': id,
    });
    res.end(body);
  });
}

/**
 * The body_filter of a collected post-function (the only Lua plugin with one here), run
 * per chunk and once with eof, as nginx calls it: see post-function.ts.
 */
export function bodyFilterOf(
  collected: ReadonlyArray<{ plugin: LoadedPlugin; entity: PluginEntity }> | undefined,
): ((st: RequestState, chunk: Buffer, eof: boolean) => Promise<void>) | undefined {
  const pf = collected?.find((c) => c.plugin.name === 'post-function');
  const code = pf ? bodyFilterCode(pf.entity.config) : undefined;
  if (!pf || !code) return undefined;
  const key = `${pf.entity.id}:${createHash('sha1').update(code.join('\0')).digest('hex')}`;
  return (st, chunk, eof) => runBodyFilter(key, code, st, chunk, eof);
}

export function send(
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
