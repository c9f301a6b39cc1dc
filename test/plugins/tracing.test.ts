/**
 * Traces that carry the tenant: the repo's kong.yml on the real Kong 3.9.3, its bundled
 * opentelemetry plugin exporting to a real OTLP receiver (scripts/services/otlp-receiver.py:
 * the official `opentelemetry-proto` classes decode what Kong sends). A chat request's span
 * carries its own tenant, plan, models, cache status, budget decision, queue wait and breaker
 * fallback; the chain's plugins are child spans of the same trace; no tenant key, provider key,
 * Authorization value or prompt text is in any span, nor in Kong's error and access logs.
 *
 * Kong creates spans only with kong.conf `tracing_instrumentations` on (given here as
 * kongConf); the harness accepts the plugin but does not trace (harness/opentelemetry.ts), so
 * under GATEWAY=harness this file checks that the harness loads the same kong.yml and refuses
 * an opentelemetry config Kong refuses.
 */
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { startGateway } from '../../harness/index';
import type { KongGateway } from '../../kong-runner/index';
import { ROOT, chat, eventually, gatewayKind, send, type Sent } from '../helpers/frontdoor';
import { startKongYmlDoor, type KongYmlDoor } from '../helpers/kong-yml-door';
import { ACCESS_IN_CHAIN } from '../../lib/pluginserver/chain-entry';

const PYTHON = path.join(ROOT, '.run', 'otlp-receiver', 'bin', 'python');
/** The span Kong names for a plugin's access phase (and the span snippet, for a merged one). */
const accessSpan = (plugin: string): string => `kong.access.plugin.${plugin}`;
const RECEIVER = path.join(ROOT, 'scripts', 'services', 'otlp-receiver.py');

type AttrValue = string | number | boolean | null | AttrValue[] | { [k: string]: AttrValue };

interface DecodedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  startTimeUnixNano: number;
  endTimeUnixNano: number;
  attributes: Record<string, AttrValue>;
  resource: Record<string, AttrValue>;
}

interface Receiver {
  url: string;
  spans(): Promise<{ requests: { decoded: number; refused: number }; spans: DecodedSpan[] }>;
}

async function startReceiver(onClose: (fn: () => void) => void): Promise<Receiver> {
  if (!existsSync(PYTHON))
    throw new Error(
      `no OTLP receiver venv at ${PYTHON}: run \`scripts/services/otlp-receiver.sh install\` (npm test does)`,
    );
  const child: ChildProcess = spawn(PYTHON, [RECEIVER, '--port', '0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  onClose(() => {
    child.kill('SIGTERM');
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the OTLP receiver did not start')), 30000);
    child.once('exit', (code) => reject(new Error(`the OTLP receiver exited (${code})`)));
    createInterface({ input: child.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      const m = /^listening (\d+)$/.exec(line);
      if (m) resolve(Number(m[1]));
      else reject(new Error(`unexpected receiver output: ${line}`));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    spans: async () => {
      const r = await send(`${url}/spans`);
      return r.json as Awaited<ReturnType<Receiver['spans']>>;
    },
  };
}

function requestId(r: Sent): string {
  const id = r.headers['x-kong-request-id'];
  if (typeof id !== 'string' || id === '') throw new Error('no X-Kong-Request-Id');
  return id;
}

/** The request's root span ("kong") once the receiver has it, and every span of its trace. */
/**
 * The request's root span ("kong") once the receiver has it, and the spans of its trace once
 * every one named in `expect` has arrived (Kong queues spans one by one: a request's spans may
 * leave in two batches).
 */
async function traceOf(
  receiver: Receiver,
  id: string,
  expect: string[] = [],
): Promise<{ root: DecodedSpan; trace: DecodedSpan[] }> {
  return eventually(async () => {
    const { spans } = await receiver.spans();
    const root = spans.find((s) => s.name === 'kong' && s.attributes['kong.request.id'] === id);
    if (!root) return undefined;
    const trace = spans.filter((s) => s.traceId === root.traceId);
    return expect.every((n) => trace.some((s) => s.name === n)) ? { root, trace } : undefined;
  }, 20000);
}

if (gatewayKind() === 'kong') {
  const tenantKeys = ['acme-demo-key', 'globex-demo-key'];
  const providerKey = `sk-provider-${randomBytes(12).toString('hex')}`;
  const prompt = `the secret plans of ${randomBytes(8).toString('hex')}`;
  let door: KongYmlDoor;
  let receiver: Receiver;
  const closers: Array<() => Promise<void> | void> = [];

  test.before(async () => {
    receiver = await startReceiver((fn) => closers.push(fn));
    // The acme tenant's dedicated upstream (circuit-breaker, pro plan) is a closed port: its
    // breaker opens after two failures and the plan's fallback upstream serves the rest.
    door = await startKongYmlDoor(
      (fn) => closers.push(fn),
      (p) => {
        const c = p.config as Record<string, unknown>;
        if (p.name === 'opentelemetry') c.traces_endpoint = `${receiver.url}/v1/traces`;
        if (p.name === 'tenant-auth')
          c.upstream_auth = { default_key: 'env:KTA_TEST_PROVIDER_KEY' };
        if (p.name === 'circuit-breaker') {
          const upstreams = c.upstreams as Record<string, Record<string, unknown>>;
          if (upstreams['pro-deployment']) upstreams['pro-deployment'].port = 9;
          c.breaker = { ...(c.breaker as object), consecutive_failures: 2 };
        }
      },
      [],
      [],
      {
        env: { KTA_TEST_PROVIDER_KEY: providerKey },
        kongConf: { tracing_instrumentations: 'all', tracing_sampling_rate: '1.0' },
      },
    );
  });
  test.after.always(async () => {
    for (const fn of closers.reverse()) await fn();
  });

  test.serial(
    'a chat request through the real Kong: its span carries the tenant and the chain’s decisions',
    async (t) => {
      // globex (free plan) asks for gpt-4o: tenant-auth serves its tier's gpt-4o-mini.
      const body = chat(prompt, { model: 'gpt-4o', temperature: 0 });
      const first = await send(`${door.url}/v1/chat/completions`, {
        headers: { apikey: 'globex-demo-key' },
        body,
      });
      t.is(first.status, 200, first.text);
      const chain = ['tenant-auth', ...ACCESS_IN_CHAIN].map(accessSpan);
      const { root, trace } = await traceOf(receiver, requestId(first), [
        ...chain,
        'kong.balancer',
      ]);
      const a = root.attributes;
      t.is(a['tenant.id'], 'globex');
      t.is(a['tenant.plan'], 'free');
      t.is(a['ai.model.requested'], 'gpt-4o');
      t.is(a['ai.model.served'], 'gpt-4o-mini');
      t.is(a['ai.model.decision'], 'rewritten');
      t.is(a['cache.status'], 'miss');
      t.is(a['budget.decision'], 'ok');
      t.is(typeof a['queue.wait_ms'], 'number');
      t.true((a['ai.usage.prompt_tokens'] as number) > 0);
      t.is(a['http.status_code'], 200);
      t.is(root.resource['service.name'], 'kong-tenant-ai-gateway');
      // The chain's own work: each plugin's access phase is a child span of the request, timed.
      // And the upstream call (kong.balancer).
      for (const name of [...chain, 'kong.balancer']) {
        const s = trace.find((x) => x.name === name);
        t.is(s?.parentSpanId, root.spanId, name);
        t.true(s!.endTimeUnixNano >= s!.startTimeUnixNano);
      }

      // The same request again is answered from globex's cache: the span says so.
      const hit = await eventually(async () => {
        const r = await send(`${door.url}/v1/chat/completions`, {
          headers: { 'x-api-key': 'globex-demo-key' },
          body,
        });
        return r.headers['x-cache-status'] === 'HIT' ? r : undefined;
      }, 15000);
      const hitSpan = (await traceOf(receiver, requestId(hit))).root.attributes;
      t.is(hitSpan['tenant.id'], 'globex');
      t.is(hitSpan['cache.status'], 'hit');
    },
  );

  test.serial(
    'plugins run inside tenant-auth’s access (the co-hosted chain) keep spans of their own',
    async (t) => {
      // The chain merges the later plugins' access into tenant-auth's once the route has shown
      // its batch snippet (lib/pluginserver/chain-access.ts): a few requests, then the one traced.
      const ask = (i: number) =>
        send(`${door.url}/v1/chat/completions`, {
          headers: { apikey: 'globex-demo-key' },
          body: chat(`${prompt} merged ${i}`, { temperature: 0 }),
        });
      for (let i = 0; i < 3; i++) t.is((await ask(i)).status, 200);
      const r = await ask(3);
      t.is(r.status, 200, r.text);
      const merged = ACCESS_IN_CHAIN.map(accessSpan);
      const { root, trace } = await traceOf(receiver, requestId(r), [
        accessSpan('tenant-auth'),
        ...merged,
      ]);
      const owner = trace.find((x) => x.name === accessSpan('tenant-auth'));
      if (!owner) return t.fail("no span for tenant-auth's access");
      t.is(owner.parentSpanId, root.spanId);
      let previousEnd = 0;
      for (const name of merged) {
        const s = trace.filter((x) => x.name === name);
        t.is(s.length, 1, `one span for ${name}`);
        const span = s[0]!;
        t.is(
          span.attributes['kong.plugin.merged'],
          true,
          `${name} ran inside tenant-auth's access`,
        );
        t.is(span.parentSpanId, owner.spanId, `${name} is a child of tenant-auth's access span`);
        t.true(span.startTimeUnixNano >= owner.startTimeUnixNano, `${name} starts within it`);
        t.true(span.endTimeUnixNano <= owner.endTimeUnixNano, `${name} ends within it`);
        t.true(span.endTimeUnixNano >= span.startTimeUnixNano);
        t.true(span.startTimeUnixNano >= previousEnd, `${name} starts after the one before it`);
        previousEnd = span.endTimeUnixNano;
      }
      // retrieval-injector's embedding call and Milvus search take time: its span shows it, not
      // only tenant-auth's.
      const retrieval = trace.find((x) => x.name === accessSpan('retrieval-injector'))!;
      t.true(retrieval.endTimeUnixNano - retrieval.startTimeUnixNano > 0);

      // The same request again: a cache hit, answered by tenant-cache inside tenant-auth's
      // phase. Its span ends with tenant-auth's; the plugins after it never ran and have none.
      const hit = await eventually(async () => {
        const x = await ask(3);
        return x.headers['x-cache-status'] === 'HIT' ? x : undefined;
      }, 15000);
      const h = await traceOf(receiver, requestId(hit), [
        accessSpan('tenant-auth'),
        accessSpan('tenant-ratelimit'),
        accessSpan('tenant-cache'),
      ]);
      const hitOwner = h.trace.find((x) => x.name === accessSpan('tenant-auth'));
      const cache = h.trace.find((x) => x.name === accessSpan('tenant-cache'));
      t.is(cache?.attributes['kong.plugin.merged'], true);
      t.is(cache?.parentSpanId, hitOwner?.spanId);
      t.is(cache?.endTimeUnixNano, hitOwner?.endTimeUnixNano, 'the hit answered: ends with it');
      for (const after of ['token-meter', 'retrieval-injector', 'circuit-breaker'])
        t.false(
          h.trace.some((x) => x.name === accessSpan(after)),
          `${after} did not run on the hit`,
        );
    },
  );

  test.serial(
    'another tenant’s span carries its own tenant, and the breaker’s fallback',
    async (t) => {
      // acme (pro) sends its key as the OpenAI SDKs do. Its dedicated upstream is down: two
      // failures open its breaker, then the plan's fallback upstream and model serve it.
      const sent: Sent[] = [];
      const served = await eventually(async () => {
        const r = await send(`${door.url}/v1/chat/completions`, {
          headers: { authorization: 'Bearer acme-demo-key' },
          body: chat(prompt, { model: 'gpt-4o' }),
        });
        sent.push(r);
        return r.headers['x-circuit-breaker-fallback'] ? r : undefined;
      }, 15000);
      t.is(served.status, 200, served.text);
      const a = (await traceOf(receiver, requestId(served))).root.attributes;
      t.is(a['tenant.id'], 'acme');
      t.is(a['tenant.plan'], 'pro');
      t.is(a['breaker.fallback'], 'backup');
      t.is(a['ai.model.requested'], 'gpt-4o');
      t.is(a['ai.model.served'], 'gpt-4o-mini');
      t.is(a['budget.decision'], 'ok');
      // Every acme request's span is acme's, the failed ones included; none is globex's.
      for (const r of sent) {
        const s = (await traceOf(receiver, requestId(r))).root.attributes;
        t.is(s['tenant.id'], 'acme');
        t.is(s['http.status_code'], r.status);
      }
      const { spans } = await receiver.spans();
      const ids = new Set(sent.map(requestId));
      t.false(
        spans.some(
          (s) =>
            ids.has(String(s.attributes['kong.request.id'])) &&
            s.attributes['tenant.id'] === 'globex',
        ),
      );
    },
  );

  test.serial(
    'a trace context sent by a client is not continued; the upstream gets the request’s own',
    async (t) => {
      const theirs = `4bf92f3577b34da6a3ce929d${randomBytes(4).toString('hex')}`;
      const r = await send(`${door.url}/v1/chat/completions`, {
        headers: { apikey: 'globex-demo-key', traceparent: `00-${theirs}-00f067aa0ba902b7-01` },
        body: chat(`trace me ${theirs}`),
      });
      t.is(r.status, 200, r.text);
      const { root } = await traceOf(receiver, requestId(r));
      t.is(root.attributes['tenant.id'], 'globex');
      t.not(root.traceId, theirs);
      t.is(root.parentSpanId, '');
      const got = door.upstream.received.find(
        (x) => x.path === '/v1/chat/completions' && x.rawBody.toString('utf8').includes(theirs),
      );
      t.regex(String(got?.headers.traceparent), new RegExp(`^00-${root.traceId}-[0-9a-f]{16}-01$`));
    },
  );

  test.serial(
    'no key, Authorization value, provider key or prompt in any span or Kong log line',
    async (t) => {
      // A key in the URL: kong.yml's key-auth reads keys from headers only (key_in_query off),
      // so it is refused; and the project's access log writes the request line without its
      // query, so the key sent there is in no log line either (checked below).
      const q = await send(`${door.url}/v1/models?apikey=globex-demo-key`);
      t.is(q.status, 401, q.text);

      // Positive controls: the secrets were in play. The upstream got the provider key and
      // the prompt, and the receiver decoded spans of every request above.
      const chats = door.upstream.received.filter((r) => r.path === '/v1/chat/completions');
      t.true(chats.length > 0);
      for (const r of chats) t.is(r.headers.authorization, `Bearer ${providerKey}`);
      t.true(chats.some((r) => r.rawBody.toString('utf8').includes(prompt)));
      const received = await receiver.spans();
      // kong.yml's queue sends spans in batches, not one export per span (its default when a
      // queue record is given without max_batch_size).
      t.true(
        received.requests.decoded * 2 <= received.spans.length,
        JSON.stringify(received.requests),
      );
      t.is(received.requests.refused, 0);
      const dump = JSON.stringify(received);
      t.true(dump.includes('globex') && dump.includes('acme'));
      for (const secret of [...tenantKeys, providerKey, prompt, 'Bearer ']) {
        t.false(dump.includes(secret), `a span holds ${secret}`);
      }
      const gw = door.gateway as KongGateway;
      const readLogs = () =>
        [gw.errorLog(), readFileSync(path.join(gw.prefix, 'logs', 'access.log'), 'utf8')].join(
          '\n',
        );
      // nginx writes a request's access line in its log phase, after the client has the answer
      // (a CI run read the log before the 401's line was there): wait for it, 5 s at most.
      let logs = readLogs();
      for (const until = Date.now() + 5000; !logs.includes('/v1/models') && Date.now() < until;) {
        await new Promise((r) => setTimeout(r, 100));
        logs = readLogs();
      }
      t.true(logs.includes('/v1/chat/completions'), 'the access log has the requests');
      t.true(logs.includes('/v1/models'), 'and the request with a key in its URL');
      for (const secret of [...tenantKeys, providerKey, prompt]) {
        t.false(logs.includes(secret), `a Kong log line holds ${secret}`);
      }
    },
  );
} else {
  test('the harness loads kong.yml with its opentelemetry plugin (accepted, not emulated)', async (t) => {
    const closers: Array<() => Promise<void> | void> = [];
    t.teardown(async () => {
      for (const fn of closers.reverse()) await fn();
    });
    const door = await startKongYmlDoor((fn) => closers.push(fn));
    const r = await send(`${door.url}/v1/chat/completions`, {
      headers: { apikey: 'globex-demo-key' },
      body: chat('hello'),
    });
    t.is(r.status, 200, r.text);
  });

  // Kong 3.9.3's own messages for the same two entries (its refusal of the declarative config).
  const refusals: Array<[string, Record<string, unknown>, string]> = [
    [
      'no endpoint',
      { resource_attributes: { 'service.name': 'x' } },
      "at least one of these fields must be non-empty: 'traces_endpoint', 'logs_endpoint'",
    ],
    ['not a URL', { traces_endpoint: 'not a url' }, 'config.traces_endpoint: missing host in url'],
  ];
  for (const [what, config, message] of refusals) {
    test(`the harness refuses an opentelemetry config Kong refuses: ${what}`, async (t) => {
      const e = await t.throwsAsync(
        startGateway({
          config: {
            _format_version: '3.0',
            services: [
              { name: 's', url: 'http://127.0.0.1:9', routes: [{ name: 'r', paths: ['/'] }] },
            ],
            plugins: [{ name: 'opentelemetry', route: 'r', config }],
          },
          pluginServers: {},
        }),
      );
      t.true(e?.message.includes(message), e?.message);
    });
  }
}
