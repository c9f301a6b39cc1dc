/**
 * tenant-ratelimit's flex (non-urgent) class, in one run, against the mock upstream with a
 * fixed capacity and service time. One tenant sends urgent traffic (a few sequential clients,
 * below the upstream's capacity) and, at the same time, a backlog of bulk work. Reported:
 * urgent p99 with the bulk running ÷ urgent p99 alone (goal ≤ 1.3×), the bulk throughput it
 * got, and the upstream's utilisation, for the bulk sent as flex
 * (2 seats reserved for urgent work, 1, none) and, for comparison, the same bulk sent as
 * ordinary urgent requests.
 *
 * Run: `npm run bench -- tenant-ratelimit-flex` (or `npx tsx bench/tenant-ratelimit-flex.ts`
 * after `npm run build`). BENCH_GATEWAY=kong runs it on the real Kong 3.9.3 (kong-runner),
 * default the harness. Knobs: BENCH_SECONDS (each phase, default 8), BENCH_SERVICE_MS (the
 * upstream's time per request, default 100). Loops are bounded in time and only reach
 * 127.0.0.1.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { startGateway } from '../harness/index';
import type { Gateway } from '../harness/types';
import { startKong } from '../kong-runner/index';
import { startMockUpstream, type MockUpstream } from '../mock-upstream/index';
import { percentile, table, writeSection } from './report';

const ROOT = path.resolve(__dirname, '..');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const GATEWAY = process.env.BENCH_GATEWAY === 'kong' ? 'kong' : 'harness';
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const SERVICE_MS = Number(process.env.BENCH_SERVICE_MS ?? 100);
const SEATS = 4;
/** Urgent: sequential clients with a think time, together about half the upstream. */
const URGENT_CLIENTS = 2;
const URGENT_THINK_MS = SERVICE_MS;
/** Bulk: closed-loop clients, enough to keep every seat it may use busy. */
const BULK_CLIENTS = SEATS * 2;

const PLANS = { w1: { tools_allowed: ['*'], weight: 1 } };
const chat = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'hello there' }],
    max_tokens: 16,
    ...extra,
  });
const URGENT_BODY = chat();
const FLEX_BODY = chat({ service_tier: 'flex' });

interface Sample {
  ms: number;
  status: number;
  at: number;
  served: string;
  /** X-Queue-Wait-Ms: how long the scheduler held it (the rest is the gateway's own time). */
  queued: number;
}

function request(agent: http.Agent, url: string, body: string): Promise<Sample> {
  const t0 = process.hrtime.bigint();
  const done = (status: number, served: string, queued = 0): Sample => ({
    ms: Number(process.hrtime.bigint() - t0) / 1e6,
    status,
    at: Date.now(),
    served,
    queued,
  });
  return new Promise((resolve) => {
    const req = http.request(
      url,
      {
        method: 'POST',
        agent,
        headers: {
          apikey: 'mixed-key',
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve(
            done(
              res.statusCode ?? 0,
              String(res.headers['x-service-class'] ?? ''),
              Number(res.headers['x-queue-wait-ms'] ?? 0),
            ),
          ),
        );
      },
    );
    req.on('error', () => resolve(done(0, '')));
    req.end(body);
  });
}

async function load(
  url: string,
  body: string,
  workers: number,
  until: number,
  thinkMs = 0,
): Promise<Sample[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: workers });
  const out: Sample[] = [];
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (Date.now() < until) {
        out.push(await request(agent, url, body));
        if (thinkMs > 0) await new Promise((r) => setTimeout(r, thinkMs));
      }
    }),
  );
  agent.destroy();
  return out;
}

/** Mean seats busy / capacity, sampled every 10 ms while `during` runs. */
async function utilisation<T>(upstream: MockUpstream, during: Promise<T>): Promise<[T, number]> {
  let sum = 0;
  let n = 0;
  let done = false;
  const sampler = (async () => {
    while (!done) {
      sum += upstream.stats().inFlight;
      n++;
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  const result = await during;
  done = true;
  await sampler;
  return [result, n ? sum / n / SEATS : 0];
}

const ok = (s: Sample[]) => s.filter((x) => x.status === 200);
const p99 = (s: Sample[]) =>
  percentile(
    ok(s)
      .map((x) => x.ms)
      .sort((a, b) => a - b),
    99,
  );

async function main(): Promise<void> {
  const upstream = await startMockUpstream({ latencyMs: SERVICE_MS, capacity: SEATS });
  const run = randomBytes(4).toString('hex');
  const ratelimit = (route: string, reserve: number) => ({
    name: 'tenant-ratelimit',
    route,
    config: {
      redis: { url: REDIS_URL, key_namespace: `bench-${run}-${route}`, timeout_ms: 1000 },
      queue: { upstream: `flex-${route}`, max_concurrent: SEATS, max_wait_ms: 20000 },
      flex: { reserved_seats: reserve, max_wait_ms: 30000 },
    },
  });
  const routes = ['reserve2', 'reserve1', 'reserve0'];
  const config = {
    _format_version: '3.0',
    services: [
      {
        name: 'llm',
        url: upstream.url,
        routes: routes.map((r) => ({ name: r, paths: [`/${r}`], strip_path: true })),
      },
    ],
    plugins: [
      ...routes.flatMap((r) => [
        { name: 'key-auth', route: r },
        { name: 'tenant-auth', route: r, config: { plans: PLANS, validate_json_body: false } },
      ]),
      ratelimit('reserve2', 2),
      ratelimit('reserve1', 1),
      ratelimit('reserve0', 0),
    ],
    consumers: [
      {
        username: 'mixed',
        custom_id: 'mixed',
        tags: ['plan:w1'],
        keyauth_credentials: [{ key: 'mixed-key' }],
      },
    ],
  };
  const opts = {
    config,
    pluginServers: Object.fromEntries(
      ['tenant-auth', 'tenant-ratelimit'].map((n) => [
        n,
        path.join(ROOT, 'dist', 'pluginservers', n),
      ]),
    ),
  };
  const gateway: Gateway =
    GATEWAY === 'kong'
      ? await startKong({ ...opts, workers: 2, label: 'bench-flex' })
      : await startGateway(opts);
  const url = (route: string) => `${gateway.url}/${route}/v1/chat/completions`;

  try {
    for (const r of routes) await load(url(r), URGENT_BODY, 2, Date.now() + 1500);

    const urgentAlone = async (route: string) => {
      const until = Date.now() + SECONDS * 1000;
      const [u, util] = await utilisation(
        upstream,
        load(url(route), URGENT_BODY, URGENT_CLIENTS, until, URGENT_THINK_MS),
      );
      return { urgent: u, util };
    };
    const mixed = async (route: string, bulkBody: string) => {
      const until = Date.now() + SECONDS * 1000;
      const bulkP = load(url(route), bulkBody, BULK_CLIENTS, until);
      await new Promise((r) => setTimeout(r, 1000)); // the bulk backlog builds up first
      const from = Date.now();
      const [u, util] = await utilisation(
        upstream,
        load(url(route), URGENT_BODY, URGENT_CLIENTS, until, URGENT_THINK_MS),
      );
      const to = Date.now();
      const bulk = await bulkP;
      const bulkDone = ok(bulk).filter((x) => x.at >= from && x.at <= to);
      return { urgent: u, bulk, bulkRate: bulkDone.length / ((to - from) / 1000), util };
    };

    const rows: Array<Array<string | number>> = [];
    const summary: string[] = [];
    const capacityRate = (SEATS * 1000) / SERVICE_MS;
    for (const [name, route, body] of [
      ['bulk sent as flex, 2 seats reserved for urgent work', 'reserve2', FLEX_BODY],
      ['bulk sent as flex, 1 seat reserved', 'reserve1', FLEX_BODY],
      ['bulk sent as flex, no seat reserved', 'reserve0', FLEX_BODY],
      ['bulk sent as ordinary (urgent) requests: no class', 'reserve2', URGENT_BODY],
    ] as const) {
      const alone = await urgentAlone(route);
      await new Promise((r) => setTimeout(r, 500));
      const m = await mixed(route, body);
      await new Promise((r) => setTimeout(r, 2500)); // drain
      const ratio = p99(m.urgent) / p99(alone.urgent);
      const urgentRate = ok(m.urgent).length / SECONDS;
      const classes = new Set(ok(m.bulk).map((x) => x.served));
      const held = ok(m.urgent).filter((x) => x.queued > 0);
      const heldP99 = percentile(
        ok(m.urgent)
          .map((x) => x.queued)
          .sort((a, b) => a - b),
        99,
      );
      rows.push([
        name,
        p99(alone.urgent).toFixed(0),
        p99(m.urgent).toFixed(0),
        `**${ratio.toFixed(2)}×**`,
        `${m.bulkRate.toFixed(1)}/s`,
        `${((m.bulkRate / Math.max(1e-9, capacityRate - urgentRate)) * 100).toFixed(0)} %`,
        `${(alone.util * 100).toFixed(1)} % → ${(m.util * 100).toFixed(1)} %`,
        `${held.length}/${ok(m.urgent).length}, p99 ${heldP99.toFixed(0)} ms`,
        `${ok(m.urgent).length}/${m.urgent.length}`,
        `${ok(m.bulk).length}/${m.bulk.length} (${[...classes].join(', ')})`,
      ]);
      summary.push(
        `${name}: urgent p99 ${ratio.toFixed(2)}x alone, bulk ${m.bulkRate.toFixed(1)}/s, utilisation ${(m.util * 100).toFixed(1)} %`,
      );
    }

    const body = `## tenant-ratelimit: non-urgent (flex) work on idle capacity, ${GATEWAY === 'kong' ? 'on the real Kong 3.9.3' : 'on the harness'}

Command: \`npm run bench -- tenant-ratelimit-flex\` (bench/tenant-ratelimit-flex.ts; \`BENCH_GATEWAY=${GATEWAY} BENCH_SECONDS=${SECONDS} BENCH_SERVICE_MS=${SERVICE_MS}\`), gateway: ${
      GATEWAY === 'kong' ? 'the real Kong 3.9.3 (2 workers)' : 'the harness'
    }, real Redis. Mock upstream: ${SEATS} seats × ${SERVICE_MS} ms (${capacityRate} requests/s),
over capacity it queues FIFO; tenant-ratelimit declares it (\`queue.max_concurrent: ${SEATS}\`).
One tenant sends urgent traffic (${URGENT_CLIENTS} sequential clients, ${URGENT_THINK_MS} ms
between requests: below the upstream's capacity) and, in the same ${SECONDS} s, a backlog of bulk
work from ${BULK_CLIENTS} closed-loop clients (body \`service_tier: "flex"\`, or no tier for the
comparison row). "alone" is the urgent p99 with no bulk traffic, measured just before on the same
route. Bulk throughput counts bulk completions while the urgent clients run; "of idle capacity"
is that rate ÷ (upstream capacity − urgent rate). Utilisation: mean busy upstream seats / ${SEATS}
(urgent alone → with the bulk). "Held for a seat" counts urgent requests the scheduler made
wait (their \`X-Queue-Wait-Ms\` > 0): what the scheduler adds; the rest of any rise in urgent
latency is the gateway's own CPU time, shared with the bulk requests (on a loaded machine, most
of it).

${table(['setup', 'urgent p99 alone ms', 'urgent p99 with bulk ms', 'with bulk ÷ alone', 'bulk throughput', 'of idle capacity', 'upstream utilisation', 'urgent requests held for a seat', 'urgent 200s', 'bulk 200s (class)'], rows)}

Goal (issue 13): urgent p99 with flex traffic ≤ 1.3× urgent p99 without it, while the flex work
uses the capacity the urgent traffic leaves idle.`;
    writeSection(
      `tenant-ratelimit-flex-${GATEWAY}${SERVICE_MS === 100 ? '' : `-${SERVICE_MS}ms`}`,
      body,
    );
    process.stdout.write(`${body}\n\n${summary.join('\n')}\n`);
  } finally {
    await gateway.close();
    await upstream.close();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
