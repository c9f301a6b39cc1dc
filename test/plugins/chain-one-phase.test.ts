/**
 * The chain's one access phase (lib/pluginserver/chain-access.ts), end to end with kong.yml's
 * chain and the plugin servers' own count of exchanges (`kta_pdk_exchanges_total`, per plugin
 * and phase):
 * - on the real Kong, once the route's batch snippet is known, tenant-ratelimit, tenant-cache,
 *   token-meter, retrieval-injector and circuit-breaker start no access phase of their own:
 *   tenant-auth's runs their work, and the requests are answered as before (a miss, then the
 *   cache's hit);
 * - a foreign plugin with an access phase between them (Kong's request-transformer, priority
 *   801, between tenant-cache's 900 and token-meter's 800) ends the merge: the plugins after it
 *   run their own phases, after it, and it sees what the plugins before it wrote;
 * - on the harness, which has no `ngx.ctx.plugins`, nothing is merged: every plugin runs its own
 *   access phase, as with one process per plugin.
 */
import { randomBytes } from 'node:crypto';
import test from 'ava';
import { freePort } from '../../harness/free-port';
import type { ReceivedRequest } from '../../mock-upstream/index';
import { Closers, gatewayKind, send } from '../helpers/frontdoor';
import { startKongYmlDoor, type KongYmlEntry } from '../helpers/kong-yml-door';
import { ACCESS_IN_CHAIN } from '../../lib/pluginserver/chain-entry';

const FOLLOWERS = ACCESS_IN_CHAIN;

const closers = new Closers();
test.after.always(() => closers.closeAll());

async function exchanges(metricsUrl: string): Promise<Map<string, number>> {
  const text = (await send(metricsUrl)).text;
  const out = new Map<string, number>();
  for (const m of text.matchAll(
    /^kta_pdk_exchanges_total\{plugin="([^"]+)",phase="([^"]+)"\} (\d+)/gm,
  )) {
    out.set(`${m[1]} ${m[2]}`, Number(m[3]));
  }
  return out;
}

async function door(extraPlugins: Array<KongYmlEntry & Record<string, unknown>> = []) {
  const port = await freePort();
  const d = await startKongYmlDoor(
    closers.add,
    (p) => {
      if (p.name === 'circuit-breaker') (p.config as Record<string, unknown>).metrics_port = port;
    },
    [],
    [],
    { extraPlugins },
  );
  return { d, metricsUrl: `http://127.0.0.1:${port}/metrics` };
}

/** Access-phase exchanges per plugin over `n` pairs of requests (a miss, then its hit). */
async function accessExchanges(
  d: { url: string },
  metricsUrl: string,
  n: number,
  headersSeen: string[] = [],
): Promise<Record<string, number | undefined>> {
  const ask = async (q: string) => {
    const res = await send(`${d.url}/v1/chat/completions`, {
      headers: { apikey: 'acme-demo-key' },
      body: { model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'user', content: q }] },
    });
    return res;
  };
  // Warm-up: the batch learns the route's reads and sees its snippet.
  for (let i = 0; i < 3; i++) await ask(`warm ${i} ${randomBytes(4).toString('hex')}`);
  const before = await exchanges(metricsUrl);
  for (let i = 0; i < n; i++) {
    const q = `one phase ${i} ${randomBytes(4).toString('hex')}`;
    const miss = await ask(q);
    const hit = await ask(q);
    if (miss.status !== 200 || hit.status !== 200) throw new Error(`${miss.text} ${hit.text}`);
    headersSeen.push(String(miss.headers['x-cache-status']), String(hit.headers['x-cache-status']));
  }
  const after = await exchanges(metricsUrl);
  const delta: Record<string, number | undefined> = {};
  for (const name of ['tenant-auth', ...FOLLOWERS]) {
    for (const phase of ['access', 'log']) {
      const k = `${name} ${phase}`;
      delta[phase === 'access' ? name : k] = (after.get(k) ?? 0) - (before.get(k) ?? 0);
    }
  }
  return delta;
}

/**
 * Every chat request the upstream received asked for an uncompressed answer: token-meter's
 * write (plugins/token-meter/reserve.ts), sent in the phase's batch of writes, arrived.
 */
function chatsAskedIdentity(d: { upstream: { received: ReceivedRequest[] } }): boolean {
  const chats = d.upstream.received.filter((r) => r.path === '/v1/chat/completions');
  return chats.length > 0 && chats.every((r) => r.headers['accept-encoding'] === 'identity');
}

if (gatewayKind() === 'kong') {
  test.serial(
    "real Kong: the chain's access work runs in tenant-auth's phase; answers as before",
    async (t) => {
      const { d, metricsUrl } = await door();
      const seen: string[] = [];
      const delta = await accessExchanges(d, metricsUrl, 10, seen);
      t.true((delta['tenant-auth'] ?? 0) > 0, "tenant-auth's access ran");
      for (const name of FOLLOWERS) t.is(delta[name], 0, `no access phase of ${name}'s own`);
      t.deepEqual([...new Set(seen)], ['MISS', 'HIT'], 'a miss, then the cache answered it');
      // token-meter's log work ran in tenant-auth's log phase: Kong started none of its own.
      t.is(delta['token-meter log'], 0, "no log phase of token-meter's own");
      t.true((delta['tenant-auth log'] ?? 0) > 0, "tenant-auth's log ran");
      t.true(chatsAskedIdentity(d), "token-meter's header write reached the upstream");
      t.true(
        (delta['tenant-auth'] ?? Infinity) <= 20 * 6,
        `at most 6 exchanges per request in the merged phase (${delta['tenant-auth']} for 20)`,
      );
    },
  );

  test.serial(
    'real Kong: a foreign plugin between ends the merge; it sees what the plugins before it wrote',
    async (t) => {
      const { d, metricsUrl } = await door([
        {
          name: 'request-transformer',
          route: 'ai',
          config: { add: { headers: ['x-foreign-saw:$(headers["x-tenant-id"])'] } },
        },
      ]);
      const delta = await accessExchanges(d, metricsUrl, 5);
      t.is(delta['tenant-ratelimit'], 0, 'before it: merged');
      t.is(delta['tenant-cache'], 0, 'before it: merged');
      for (const name of ['token-meter', 'retrieval-injector', 'circuit-breaker']) {
        t.true((delta[name] ?? 0) > 0, `after it: ${name} runs its own access`);
      }
      t.true((delta['token-meter log'] ?? 0) > 0, 'not merged: token-meter runs its own log');
      const last = d.upstream.received.at(-1);
      t.is(last?.headers['x-foreign-saw'], 'acme', "the foreign plugin saw tenant-auth's header");
    },
  );
} else {
  test.serial(
    'harness (no ngx.ctx.plugins): nothing merged, every plugin runs its own access phase',
    async (t) => {
      const { d, metricsUrl } = await door();
      const delta = await accessExchanges(d, metricsUrl, 3);
      for (const name of ['tenant-auth', 'tenant-ratelimit', 'tenant-cache']) {
        t.true((delta[name] ?? 0) > 0, `${name}'s own access phase`);
      }
      t.true(chatsAskedIdentity(d), "token-meter's header write reached the upstream");
    },
  );
}
