/**
 * The mock upstream's HTTP server: records each request, then applies the knobs in order —
 * injected failure, rate quota, capacity, latency — and hands the request to its endpoint.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createCapacityGate } from './capacity';
import { anthropicMessages } from './anthropic';
import { bedrockConverse } from './bedrock';
import { cohereChat } from './cohere';
import { llamaRawGenerate, ollamaChat } from './ollama';
import { chatCompletions } from './chat';
import { CONTROL_PREFIX, handleControl, type Controllable } from './control';
import { embeddings } from './embeddings';
import type { Endpoint, EndpointContext } from './endpoint';
import { createFailurePlan, inflictFailure } from './failures';
import { createRateGate } from './rate';
import { DEFAULT_KNOBS, parseKnobs, type MockKnobs } from './knobs';
import { listModels, retrieveModel } from './models';
import { createObjectStore, type ObjectStore } from './objects';
import { errorBody, isInvalidRequestError, sendInvalidRequest, sendJson } from './openai-error';
import { appendBounded, recordRequest, type ReceivedRequest } from './recording';
import { readBody } from './request-body';
import { loadEncodings } from '../lib/tokens/tokenize';

export interface MockStats {
  /** Requests holding a capacity slot right now. */
  inFlight: number;
  /** Most requests ever holding a slot at once (since start or reset). */
  maxInFlight: number;
  /** Requests handed to an endpoint (any status, including validation errors). */
  served: number;
  /** Requests answered 429 because capacity was full and overCapacity is 'reject'. */
  rejected: number;
  /** Requests waiting for a slot right now. */
  queued: number;
  /** Requests waiting for a start of the rate quota (`ratePerSecond`) right now. */
  rateQueued: number;
  /** Requests that began service (passed the rate quota and capacity) since start or reset. */
  started: number;
  /** Failures injected since the failure knob was last set. */
  injected: number;
}

/** Chat usage the mock answered for one tenant (the `X-Tenant-Id` the gateway sent). */
export interface UpstreamUsage {
  /** Chat answers that carried usage to the client whole. */
  answers: number;
  prompt: number;
  completion: number;
}

export interface MockUpstream {
  /** Base URL without a trailing slash, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  readonly port: number;
  /** Everything received (control API excepted), oldest first; keeps the last 10 000. */
  readonly received: ReceivedRequest[];
  /** Changes some knobs; validates all of them first (RangeError names the bad value). */
  configure(knobs: Partial<MockKnobs>): void;
  /** Clears `received` and the counters, and puts every knob back to its default. */
  reset(): void;
  stats(): MockStats;
  /**
   * When each of the last 20 000 requests began service (ms since the epoch, oldest first):
   * a benchmark reads from it when the upstream had a start to give.
   */
  startTimes(): number[];
  /**
   * When each of the last 20 000 requests that began service ended it (its response closed,
   * freeing its seat): a benchmark reads from it when a seat freed.
   */
  endTimes(): number[];
  /**
   * Chat usage answered since start or reset, per `X-Tenant-Id` ('' without one): what a
   * provider would bill, to compare with the gateway's ledger. Counted for JSON answers and for
   * streams whose final usage event was written (`stream_options.include_usage`); not for
   * answers cut by a failure.
   */
  usage(): Record<string, UpstreamUsage>;
  /**
   * The ids of the objects the mock keeps as a provider does under its one key (stored
   * responses, stored chat completions, files, batches, uploads, vector stores:
   * mock-upstream/objects.ts), by kind.
   */
  objectIds(
    kind: 'response' | 'chat_completion' | 'file' | 'batch' | 'upload' | 'vector_store',
  ): string[];
  /** Stops listening and ends every open socket, including ones held by a `timeout` failure. */
  close(): Promise<void>;
}

export interface StartOptions extends Partial<MockKnobs> {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (an ephemeral port). */
  port?: number;
}

/** Bound on the start times kept (`startTimes()`). */
const MAX_STARTS = 20_000;

function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function notFound(res: ServerResponse, method: string, path: string): void {
  sendJson(res, 404, errorBody(`Invalid URL (${method} ${path})`, 'invalid_request_error'));
}

function endpointFor(method: string, path: string): Endpoint | undefined {
  if (method === 'POST' && path === '/v1/chat/completions') return chatCompletions;
  if (method === 'POST' && path === '/v1/embeddings') return embeddings;
  // Anthropic's Messages API (Kong's ai-proxy with provider anthropic).
  if (method === 'POST' && path === '/v1/messages') return anthropicMessages;
  // Cohere's Chat API v1 (Kong's ai-proxy with provider cohere).
  if (method === 'POST' && path === '/v1/chat') return cohereChat;
  // Ollama's chat API (Kong's ai-proxy with provider llama2, llama2_format ollama).
  if (method === 'POST' && path === '/api/chat') return ollamaChat;
  // A llama2 raw endpoint (ai-proxy's llama2 with llama2_format raw): no usage reported.
  if (method === 'POST' && path === '/generate') return llamaRawGenerate;
  // Bedrock's Converse API (Kong's ai-proxy with provider bedrock).
  if (method === 'POST' && /^\/model\/[^/]+\/converse(-stream)?$/.test(path))
    return bedrockConverse;
  if (method === 'GET' && path === '/v1/models') return async (ctx) => listModels(ctx.res);
  const model = /^\/v1\/models\/([^/]+)$/.exec(path)?.[1];
  if (method === 'GET' && model !== undefined) {
    return async (ctx) => retrieveModel(ctx.res, decodeURIComponent(model));
  }
  return undefined;
}

async function runEndpoint(
  ctx: EndpointContext,
  method: string,
  path: string,
  objects: ObjectStore,
): Promise<void> {
  const endpoint = objects.endpoint(method, path) ?? endpointFor(method, path);
  if (endpoint === undefined) {
    notFound(ctx.res, method, path);
    return;
  }
  try {
    await endpoint(ctx);
    if (endpoint === chatCompletions) objects.afterChat(ctx);
  } catch (e) {
    if (ctx.res.headersSent) ctx.res.destroy();
    else if (isInvalidRequestError(e)) sendInvalidRequest(ctx.res, e);
    else {
      const message = `mock upstream: ${e instanceof Error ? e.message : String(e)}`;
      sendJson(ctx.res, 500, errorBody(message, 'server_error'));
    }
  }
}

/** Starts the mock upstream; resolves once it is listening. */
export async function startMockUpstream(opts: StartOptions = {}): Promise<MockUpstream> {
  const { host = '127.0.0.1', port = 0, ...initialKnobs } = opts;
  // The BPE vocabularies are built before listening (once per process), not in the first
  // request's service time.
  loadEncodings();
  let knobs: MockKnobs = { ...DEFAULT_KNOBS, ...parseKnobs(initialKnobs) };
  const gate = createCapacityGate(knobs.capacity);
  const rate = createRateGate(knobs.ratePerSecond, knobs.rateBurst);
  const starts: number[] = [];
  const ends: number[] = [];
  const failures = createFailurePlan();
  failures.set(knobs.failure);
  const received: ReceivedRequest[] = [];
  // Aborted when their response closes or the server closes: stops pauses and queue waits.
  const live = new Set<AbortController>();
  let served = 0;
  let rejected = 0;
  let started = 0;
  let sequence = 0;
  // One entry per tenant that reached the mock: bounded by the tenants of a run.
  const usageByTenant = new Map<string, UpstreamUsage>();
  const objects = createObjectStore();

  const handle: Controllable & { stats(): MockStats } = {
    received,
    knobs: () => knobs,
    configure(partial) {
      const parsed = parseKnobs(partial);
      knobs = { ...knobs, ...parsed };
      if (parsed.capacity !== undefined) gate.setCapacity(parsed.capacity);
      if (parsed.ratePerSecond !== undefined || parsed.rateBurst !== undefined) {
        rate.setRate(knobs.ratePerSecond, knobs.rateBurst);
      }
      if (parsed.failure !== undefined) failures.set(parsed.failure);
    },
    reset() {
      received.length = 0;
      knobs = { ...DEFAULT_KNOBS };
      gate.setCapacity(knobs.capacity);
      rate.setRate(knobs.ratePerSecond, knobs.rateBurst);
      gate.resetMaxInFlight();
      starts.length = 0;
      ends.length = 0;
      started = 0;
      failures.set(null);
      served = 0;
      rejected = 0;
      usageByTenant.clear();
      objects.reset();
    },
    stats: () => ({
      inFlight: gate.inFlight,
      maxInFlight: gate.maxInFlight,
      served,
      rejected,
      queued: gate.queued,
      rateQueued: rate.queued,
      started,
      injected: failures.injected,
    }),
    startTimes: () => [...starts],
    endTimes: () => [...ends],
  };

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path.startsWith(CONTROL_PREFIX)) {
      await handleControl(handle, req, res, path);
      return;
    }
    const rawBody = await readBody(req);
    const record = recordRequest(req, rawBody);
    appendBounded(received, record);
    const knobsNow = knobs;
    const abort = new AbortController();
    live.add(abort);
    res.on('close', () => {
      abort.abort();
      live.delete(abort);
    });

    if (knobsNow.apiKey !== null && req.headers.authorization !== `Bearer ${knobsNow.apiKey}`) {
      sendJson(
        res,
        401,
        errorBody(
          'Incorrect API key provided. You can find your API key at the provider.',
          'invalid_request_error',
          null,
          'invalid_api_key',
        ),
      );
      return;
    }
    const failure = failures.decide(path);
    // A cut is served like any answer, then broken part-way by the endpoint.
    if (failure !== null && failure.mode !== 'cut') {
      inflictFailure(failure, req, res);
      return;
    }
    const quota = await rate.enter(knobsNow.overCapacity, abort.signal);
    if (quota.kind === 'abandoned') return;
    const admission =
      quota.kind === 'rejected' ? quota : await gate.enter(knobsNow.overCapacity, abort.signal);
    if (admission.kind === 'abandoned') return;
    if (admission.kind === 'rejected') {
      rejected += 1;
      sendJson(
        res,
        429,
        errorBody(
          'mock upstream: over capacity, please retry',
          'requests',
          null,
          'rate_limit_exceeded',
        ),
        { 'retry-after': '1' },
      );
      return;
    }
    if (abort.signal.aborted) {
      admission.release();
      return;
    }
    res.on('close', admission.release);
    res.on('close', () => {
      ends.push(Date.now());
      if (ends.length > MAX_STARTS) ends.splice(0, ends.length - MAX_STARTS);
    });
    started += 1;
    starts.push(Date.now());
    if (starts.length > MAX_STARTS) starts.splice(0, starts.length - MAX_STARTS);

    const signal = abort.signal;
    if (knobsNow.latencyMs > 0 && !(await pause(knobsNow.latencyMs, signal))) return;
    served += 1;
    sequence += 1;
    const ctx: EndpointContext = {
      req,
      res,
      rawBody,
      knobs: knobsNow,
      requestId: `mock-${sequence}`,
      pause: (ms) => pause(ms, signal),
      ...(failure?.mode === 'cut' ? { cutAfterEvents: failure.afterEvents ?? 2 } : {}),
    };
    const tenantHeader = req.headers['x-tenant-id'];
    const tenant = typeof tenantHeader === 'string' ? tenantHeader : '';
    ctx.onUsage = (u) => {
      const sum = usageByTenant.get(tenant) ?? { answers: 0, prompt: 0, completion: 0 };
      sum.answers += 1;
      sum.prompt += u.prompt_tokens;
      sum.completion += u.completion_tokens;
      usageByTenant.set(tenant, sum);
    };
    record.responseId = ctx.requestId;
    await runEndpoint(ctx, method, path, objects);
  }

  const server = createServer((req, res) => {
    serve(req, res).catch(() => res.destroy());
  });
  // Idle keep-alive sockets are kept past Kong's upstream_keepalive_idle_timeout (60 s), so
  // nginx closes them first: with Node's 5 s, nginx now and then reused a socket the mock was
  // closing, and the request got a 502 (seen in the soak). Any upstream behind a proxy should.
  server.keepAliveTimeout = 75_000;
  server.headersTimeout = 76_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const boundPort = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  let closed: Promise<void> | undefined;

  return {
    url: `http://${urlHost}:${boundPort}`,
    port: boundPort,
    received,
    configure: handle.configure,
    reset: handle.reset,
    stats: handle.stats,
    startTimes: handle.startTimes,
    endTimes: handle.endTimes,
    usage: () => Object.fromEntries([...usageByTenant].map(([t, u]) => [t, { ...u }])),
    objectIds: (kind) => objects.ids(kind),
    close() {
      closed ??= new Promise<void>((resolve) => {
        for (const a of live) a.abort();
        server.close(() => resolve());
        // Ends keep-alive sockets and those a `timeout` failure holds open on purpose.
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
