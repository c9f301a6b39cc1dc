/**
 * tenant-cache's PDK calls per request shape, as its README states them ("PDK calls per
 * phase"): a cacheable miss and its store, a hit, the bypasses (a GET, a streamed chat,
 * no-cache, no master secret), the refusal of a route without tenant-auth, and a semantic hit.
 * Counted by the harness, which sees every RPC between Kong and the plugin server; the real
 * Kong exposes no such count, so this file runs on the harness only. Run it in both layouts:
 * KTA_PLUGINSERVER_MODE=chain (the default) and per-plugin.
 */
import test from 'ava';
import { closeAllRedis } from '../../lib/redis/client';
import { apikey, detChat, startCacheDoor, stored, type CacheDoor } from '../helpers/cache-door';
import { Closers, type FrontDoor, type Sent } from '../helpers/frontdoor';
import {
  askSem,
  question,
  startSemanticDoor,
  tag,
  type SemanticDoor,
} from '../helpers/semantic-door';

// Both doors under one set of closers: each door's own shared hook closes every Redis client,
// the other door's too, before that door has deleted its keys.
const closers = new Closers();
let doors: { cache: CacheDoor; semantic: SemanticDoor } | undefined;
test.before(async () => {
  doors = {
    cache: await startCacheDoor(closers.add),
    semantic: await startSemanticDoor(closers.add),
  };
});
test.after.always(async () => {
  await closers.closeAll();
  await closeAllRedis();
});
const started = () => {
  if (!doors) throw new Error('the doors did not start');
  return doors;
};

/** A probe for the PDK batch snippet, which these routes lack (lib/pluginserver/batch.ts). */
const BATCH_PROBE = 'kong.ctx.shared.kta_pdk.run';
const NOTICE = 'kong.log.warn';

/** The calls of one phase, one name per call, sorted. */
function names(p: { pdkCalls: Record<string, number> } | undefined): string[] {
  return (
    Object.entries(p?.pdkCalls ?? {})
      // An operator notice of the plugin server (lib/pdk/notices.ts: here the no-master-secret
      // route's "caching disabled") rides on whichever log phase comes next: once per notice,
      // not a call of the request's.
      .filter(([k]) => k !== BATCH_PROBE && k !== NOTICE)
      .flatMap(([k, n]) => Array<string>(n).fill(k))
      .sort()
  );
}

interface Calls {
  status: number;
  cache: string | undefined;
  /** X-Cache-Match: `semantic` on a semantic hit. */
  match: string | undefined;
  access: string[];
  /** Its own log phase (one process per plugin), or null in the co-hosted chain. */
  log: string[] | null;
  /** tenant-auth's log phase, which runs this plugin's store in the co-hosted chain. */
  chainLog: string[];
}

async function callsOf(gateway: FrontDoor['gateway'], res: Sent): Promise<Calls> {
  const id = String(res.headers['x-kong-request-id']);
  await gateway.logDone(id);
  const plugins = gateway.requestStats(id)?.plugins;
  const own = plugins?.['tenant-cache'];
  return {
    status: res.status,
    cache: res.headers['x-cache-status'] as string | undefined,
    match: res.headers['x-cache-match'] as string | undefined,
    access: names(own?.access),
    log: own?.log === undefined ? null : names(own.log),
    chainLog: names(plugins?.['tenant-auth']?.log),
  };
}

const GET = 'kong.ctx.shared.get';
const SET = 'kong.ctx.shared.set';
const ROUTE = 'kong.router.get_route';
const EXIT = 'kong.response.exit';
const HEADER = 'kong.response.set_header';
const BUFFER = 'kong.service.request.enable_buffering';
/** A refusal: logged, and its body names the request (lib/plugin/phase.ts: one get_var). */
const REFUSAL = ['kong.log.err', 'kong.nginx.get_var', EXIT];
const METHOD = 'kong.request.get_method';
/** The request's own reads: co-hosted, they come from the request's scope (tenant-auth's). */
const READS = [
  METHOD,
  'kong.request.get_path_with_query',
  'kong.request.get_headers',
  'kong.request.get_raw_body',
];
/**
 * The store's reads in log (the snapshot Kong saved of the response; who answered it; the
 * answer kept by kong.yml's capture snippet, which these routes lack; then Kong's buffered body).
 */
const STORE = [
  GET,
  'kong.response.get_headers',
  'kong.response.get_source',
  'kong.response.get_status',
  'kong.service.response.get_raw_body',
];

/** A miss's writes: the capture snippet's flag, the buffering (no route here keeps answers), the status header. */
const MISS_WRITES = [SET, BUFFER, HEADER];

/** The calls of a phase, sorted, from their names. */
const calls = (...n: Array<string | string[]>): string[] => n.flat().sort();

test.serial('PDK calls per phase stay as documented', async (t) => {
  const d = started().cache;
  const ask = async (pathname: string, key: string, init: Parameters<typeof d.call>[1] = {}) =>
    callsOf(
      d.gateway,
      (await d.call(pathname, { ...init, headers: [...apikey(key), ...(init.headers ?? [])] })).res,
    );

  const body = detChat('pdk calls');
  const miss = await ask('/v1/chat/completions', 'acme-key', { body });
  await stored(d, 'acme');
  const hit = await ask('/v1/chat/completions', 'acme-key', { body });
  const refresh = await ask('/v1/chat/completions', 'acme-key', {
    body,
    headers: [['cache-control', 'no-cache']],
  });
  const stream = await ask('/v1/chat/completions', 'acme-key', {
    body: detChat('pdk stream', { stream: true }),
  });
  const get = await ask('/v1/models', 'acme-key', { method: 'GET' });
  const nokey = await ask('/nokey/v1/chat/completions', 'acme-key', { body: detChat('nokey') });
  const untenanted = await ask('/untenanted/v1/chat/completions', 'acme-key', {
    body: detChat('untenanted'),
  });
  t.deepEqual(
    [miss, hit, refresh, stream, get, nokey, untenanted].map((r) => [r.status, r.cache]),
    [
      [200, 'MISS'],
      [200, 'HIT'],
      [200, 'BYPASS'],
      [200, 'BYPASS'],
      [200, 'BYPASS'],
      [200, 'BYPASS'],
      [500, undefined],
    ],
  );

  const chain = miss.log === null;
  const method = chain ? [] : [METHOD];
  const reads = chain ? [] : READS;
  const decided = [GET, ROUTE, SET, ...reads];
  t.deepEqual(miss.access, calls(decided, MISS_WRITES), 'cacheable miss');
  t.deepEqual(hit.access, calls(decided, EXIT), 'hit');
  t.deepEqual(refresh.access, calls(decided, MISS_WRITES), 'no-cache: refreshed, not served');
  t.deepEqual(stream.access, calls(GET, SET, HEADER, reads), 'streamed chat');
  t.deepEqual(get.access, calls(GET, SET, HEADER, method), 'a GET');
  t.deepEqual(nokey.access, calls(GET, SET, HEADER), 'no master secret');
  t.deepEqual(untenanted.access, calls(GET, REFUSAL), 'no TenantContext: refused');

  // The store's reads follow the carrier read; the pending store and the TenantContext come
  // from the request's scope, in either layout.
  if (chain) {
    // In tenant-auth's log phase, after its own carrier read.
    t.deepEqual(miss.chainLog, calls(GET, STORE), 'the store, in the chain');
    t.deepEqual(refresh.chainLog, calls(GET, STORE), 'the refresh, in the chain');
    for (const r of [hit, stream, get, nokey]) t.deepEqual(r.chainLog, [GET], 'nothing to store');
    // No tenant-auth on the route: no chain log phase, and none of this plugin's own.
    t.deepEqual([untenanted.log, untenanted.chainLog], [null, []], 'refused: no log work');
    return;
  }
  t.deepEqual(miss.log, calls(GET, STORE), 'the store');
  t.deepEqual(refresh.log, calls(GET, STORE), 'the refresh');
  for (const r of [hit, stream, get, nokey]) t.deepEqual(r.log, [GET], 'nothing to store');
  // No scope to find (no carrier): the carrier read, then the ctx.shared copy, empty.
  t.deepEqual(untenanted.log, [GET, GET], 'refused: nothing to store');
});

test.serial('the semantic cache adds no PDK call', async (t) => {
  const d = started().semantic;
  const ask = async (body: object) =>
    callsOf(d.gateway, (await d.call('acme', '/sem/v1/chat/completions', { body })).res);
  const id = tag();
  // askSem waits for the miss's semantic store (log), so the near-duplicate can find it.
  const q = question('what is the refund policy for annual plans in europe', id);
  const first = await callsOf(d.gateway, (await askSem(d, 'acme', 'sem', q)).res);
  t.is(first.cache, 'MISS');
  const near = await ask(
    question('What is the refund policy for annual plans in Europe, please?', id),
  );
  t.is(near.match, 'semantic');
  t.is(near.cache, 'HIT', 'a semantic hit');
  const chain = first.log === null;
  const reads = chain ? [] : READS;
  t.deepEqual(first.access, calls(GET, ROUTE, SET, reads, MISS_WRITES), 'miss');
  t.deepEqual(near.access, calls(GET, ROUTE, SET, reads, EXIT), 'semantic hit');
  t.deepEqual(chain ? first.chainLog : first.log, calls(GET, STORE), 'the store (both caches)');
  t.deepEqual(chain ? near.chainLog : near.log, [GET], 'nothing to store');
});
