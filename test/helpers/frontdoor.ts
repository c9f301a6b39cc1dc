/**
 * Starts what an end-to-end test needs: the mock upstream and the harness gateway running
 * the compiled plugins (dist/pluginservers, built by `npm test`) plus test fixtures, on a
 * declarative config built by the test. Everything is stopped in teardown.
 */
import type { TestFn } from 'ava';
import { existsSync } from 'node:fs';
import http, { type IncomingHttpHeaders } from 'node:http';
import path from 'node:path';
import { startGateway, type Gateway } from '../../harness/index';
import { closeAllRedis } from '../../lib/redis/client';
import { startKong } from '../../kong-runner/index';
import { startMockUpstream, type MockUpstream } from '../../mock-upstream/index';

export const ROOT = path.resolve(__dirname, '..', '..');

export function pluginServerDir(name: string): string {
  const built = path.join(ROOT, 'dist', 'pluginservers', name);
  if (existsSync(built)) return built;
  const fixture = path.join(ROOT, 'test', 'fixtures', 'pluginservers', name);
  if (existsSync(fixture)) return fixture;
  throw new Error(`no plugin server directory for ${name}: run \`npm run build\` first`);
}

/**
 * Which gateway the end-to-end and isolation suites run on: `GATEWAY=kong` (the real Kong
 * 3.9.3, see kong-runner/) or `harness` (default; Kong in miniature, the fast loop).
 * `npm test` runs those suites on both when a Kong is installed.
 */
export type GatewayKind = 'kong' | 'harness';
export function gatewayKind(): GatewayKind {
  const v = process.env.GATEWAY ?? 'harness';
  if (v !== 'kong' && v !== 'harness') throw new Error(`GATEWAY must be kong or harness, got ${v}`);
  return v;
}

/** Polls `check` until it returns a value other than undefined (log-phase effects). */
export async function eventually<T>(
  check: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 5000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function hasPluginServer(name: string): boolean {
  try {
    pluginServerDir(name);
    return true;
  } catch {
    return false;
  }
}

export interface FrontDoor {
  gateway: Gateway;
  upstream: MockUpstream;
  url: string;
}

export interface PluginEntry {
  name: string;
  config?: Record<string, unknown>;
  route?: string;
  service?: string;
  consumer?: string;
}

export interface ConsumerEntry {
  username: string;
  custom_id?: string | null;
  tags?: string[];
  keyauth_credentials?: Array<{ key: string }>;
}

/** A config with one service `llm` (the mock upstream) and one route `ai` on /v1. */
export function declarative(
  upstreamUrl: string,
  plugins: PluginEntry[],
  consumers: ConsumerEntry[] = [],
): Record<string, unknown> {
  return {
    _format_version: '3.0',
    services: [
      {
        name: 'llm',
        url: upstreamUrl,
        routes: [{ name: 'ai', paths: ['/v1'], strip_path: false }],
      },
    ],
    plugins,
    consumers,
  };
}

/** key-auth on every route, hiding the key from the upstream. */
export const KEY_AUTH: PluginEntry = {
  name: 'key-auth',
  config: { key_names: ['apikey'], hide_credentials: true },
};

/**
 * One key-auth consumer per tenant, as tenant-auth maps them: username `<id>-app`, custom_id
 * the tenant id, tag `plan:<plan>`, key `<id>-key`.
 */
export function planConsumers(pairs: ReadonlyArray<readonly [string, string]>): ConsumerEntry[] {
  return pairs.map(([id, plan]) => ({
    username: `${id}-app`,
    custom_id: id,
    tags: [`plan:${plan}`],
    keyauth_credentials: [{ key: `${id}-key` }],
  }));
}

/** Where a started thing registers its stop: `t.teardown` in a test, a `Closers` in hooks. */
export type OnClose = (close: () => Promise<void> | void) => void;

/** For `test.before`: collect stops, run them in `test.after.always`. */
export class Closers {
  private readonly fns: Array<() => Promise<void> | void> = [];
  readonly add: OnClose = (fn) => {
    this.fns.push(fn);
  };
  async closeAll(): Promise<void> {
    for (const fn of this.fns.reverse()) await fn();
  }
}

/**
 * One door for a whole test file: started in `test.before`, closed after every test (its
 * processes, then this process's Redis clients); the getter throws when the start failed.
 */
export function sharedDoor<D>(
  test: TestFn,
  label: string,
  start: (closers: Closers) => Promise<D>,
): () => D {
  let door: D | undefined;
  const closers = new Closers();
  test.before(async () => {
    door = await start(closers);
  });
  test.after.always(async () => {
    await closers.closeAll();
    await closeAllRedis();
  });
  return () => {
    if (door === undefined) throw new Error(`the ${label} did not start`);
    return door;
  };
}

export interface FrontDoorOptions {
  /** Environment of the plugin servers (secrets named by the config). */
  env?: Record<string, string>;
  /** kong.conf settings beyond the project's (the harness mirrors only a few: harness/gateway.ts). */
  kongConf?: Record<string, string>;
  /**
   * nginx worker processes of each node, in node order (the real Kong only; the harness has
   * none); a node without an entry gets kong-runner's default (1).
   */
  workers?: readonly number[];
  /** Receives the gateway's notes (the harness's config warnings among them). */
  logger?: (line: string) => void;
}

export async function startFrontDoor(
  onClose: OnClose,
  build: (upstreamUrl: string) => Record<string, unknown>,
  options: FrontDoorOptions = {},
): Promise<FrontDoor> {
  const { gateways, upstream } = await startFrontDoors(onClose, build, { ...options, nodes: 1 });
  const gateway = gateways[0] as Gateway;
  return { gateway, upstream, url: gateway.url };
}

/** Several gateway nodes on one declarative config, one mock upstream (and whatever Redis it names). */
export interface Cluster {
  /** One per node, each with its own port and its own plugin-server processes. */
  gateways: Gateway[];
  /** The declarative config every node started with. */
  config: Record<string, unknown>;
  upstream: MockUpstream;
  urls: string[];
}

/**
 * `nodes` gateways of the kind `GATEWAY` names (real Kongs, each with its own prefix, port and
 * plugin servers; or harness gateways, each with its own plugin servers), all on the same
 * declarative config and the same mock upstream: a cluster, as far as anything shared
 * through the config (a Redis) is concerned. Started one after the other.
 */
export async function startFrontDoors(
  onClose: OnClose,
  build: (upstreamUrl: string) => Record<string, unknown>,
  options: FrontDoorOptions & { nodes: number },
): Promise<Cluster> {
  const upstream = await startMockUpstream();
  onClose(() => upstream.close());
  const config = build(upstream.url);
  const names = new Set<string>();
  for (const p of (config.plugins as PluginEntry[] | undefined) ?? []) {
    // Ours (a built or fixture plugin-server dir); anything else is one of Kong's bundled plugins.
    if (hasPluginServer(p.name)) names.add(p.name);
  }
  const gateways: Gateway[] = [];
  for (let node = 0; node < options.nodes; node++) {
    const opts = {
      config,
      pluginServers: Object.fromEntries([...names].map((n) => [n, pluginServerDir(n)])),
      ...(options.env ? { env: options.env } : {}),
      ...(options.kongConf ? { kongConf: options.kongConf } : {}),
      // GATEWAY_LOG=1 shows plugin-server output and gateway notes while debugging a test.
      ...(process.env.GATEWAY_LOG || options.logger
        ? {
            logger: (line: string) => {
              options.logger?.(line);
              if (process.env.GATEWAY_LOG)
                process.stderr.write(`${options.nodes > 1 ? `[node ${node}] ` : ''}${line}\n`);
            },
          }
        : {}),
    };
    const workers = options.workers?.[node];
    const gateway =
      gatewayKind() === 'kong'
        ? await startKong({
            ...opts,
            ...(options.nodes > 1 ? { label: `kong-node${node}` } : {}),
            ...(workers !== undefined ? { workers } : {}),
          })
        : await startGateway(opts);
    onClose(() => gateway.close());
    gateways.push(gateway);
  }
  return { gateways, upstream, config, urls: gateways.map((g) => g.url) };
}

export interface Sent {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: unknown;
}

/**
 * Sends one request with node:http so header lines go out exactly as given: case kept,
 * duplicates as separate lines (fetch would merge them).
 */
export function send(
  url: string,
  init: {
    method?: string;
    headers?: Record<string, string> | Array<[string, string]>;
    body?: string | Buffer | object;
  } = {},
): Promise<Sent> {
  const body =
    init.body === undefined
      ? undefined
      : typeof init.body === 'string' || Buffer.isBuffer(init.body)
        ? init.body
        : JSON.stringify(init.body);
  const pairs: Array<[string, string]> = Array.isArray(init.headers)
    ? [...init.headers]
    : Object.entries(init.headers ?? {});
  const has = (n: string) => pairs.some(([k]) => k.toLowerCase() === n);
  if (
    body !== undefined &&
    typeof init.body === 'object' &&
    !Buffer.isBuffer(init.body) &&
    !has('content-type')
  ) {
    pairs.push(['content-type', 'application/json']);
  }
  // With an array of headers Node adds no defaults: Host is ours to send.
  if (!has('host')) pairs.unshift(['host', new URL(url).host]);
  if (body !== undefined && !has('content-length') && !has('transfer-encoding')) {
    pairs.push(['content-length', String(Buffer.byteLength(body))]);
  }
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      // A fresh connection per request: a reused keep-alive socket can be closed by the server's
      // idle timeout just as a test on a loaded machine sends on it (ECONNRESET).
      {
        method: init.method ?? (body !== undefined ? 'POST' : 'GET'),
        headers: pairs.flat(),
        agent: false,
      },
      (res) => collectSent(res).then(resolve, reject),
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A whole response as a test reads it: status, headers, text, and the JSON when it parses. */
export function collectSent(res: http.IncomingMessage): Promise<Sent> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
    });
    res.on('error', reject);
  });
}

/** The `error` object of an OpenAI-style error body. */
export function apiError(r: Sent): { message: string; type: string; code: string; param: unknown } {
  const e = (r.json as { error?: unknown } | undefined)?.error;
  if (!e || typeof e !== 'object')
    throw new Error(`not an OpenAI-style error (${r.status}): ${r.text}`);
  return e as { message: string; type: string; code: string; param: unknown };
}

/** A chat completion request body. */
export function chat(
  content: string,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { model: 'gpt-4o-mini', messages: [{ role: 'user', content }], ...extra };
}
