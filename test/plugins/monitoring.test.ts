/**
 * Monitoring people can look at: the repo's kong.yml chain (every plugin, its own metrics
 * port), traffic of two tenants (a cache hit, a rate-limit refusal), then
 *  - every plugin server's /metrics is scraped, and the Grafana dashboard and the alert rules
 *    may only query series some plugin server exports (names parsed from their PromQL);
 *  - the real Prometheus (Debian's package) runs with a config from the same generator as the
 *    compose stack's and the repo's alert rules: every target is up, a per-tenant query
 *    returns both tenants, every rule evaluates without error;
 *  - promtool checks the compose stack's config and the rules, and runs their unit tests.
 * Only the upstream addresses, Redis key namespaces, the Milvus collection and the metrics ports
 * of kong.yml are changed (and globex's request rate, so that a refusal is cheap to provoke).
 */
import test from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { createMilvus } from '../../lib/milvus/client';
import {
  metricsTargets,
  prometheusConfig,
  type ScrapeTarget,
} from '../../scripts/monitoring/prometheus-config';
import { Closers, ROOT, chat, eventually, send, startFrontDoor } from '../helpers/frontdoor';
import {
  addExposition,
  dashboardExprs,
  emptyExported,
  expandGrafanaVariables,
  problems,
  ruleExprs,
  type Exported,
} from '../helpers/promql';
import { deleteKeysMatching } from '../helpers/redis-cleanup';
import { freePorts } from '../../harness/free-port';

const run = promisify(execFile);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const MILVUS_ADDRESS = process.env.MILVUS_ADDRESS ?? '127.0.0.1:19530';
const RULES_DIR = path.join(ROOT, 'docker', 'prometheus', 'rules');
const RULE_FILES = readdirSync(RULES_DIR)
  .filter((f) => f.endsWith('.yml'))
  .map((f) => path.join(RULES_DIR, f));
const RULE_TESTS = readdirSync(path.join(ROOT, 'docker', 'prometheus', 'tests'))
  .filter((f) => f.endsWith('.yml'))
  .map((f) => path.join('docker', 'prometheus', 'tests', f));
const DASHBOARD = path.join(ROOT, 'docker', 'grafana', 'dashboards', 'tenants.json');

interface Entry {
  name: string;
  config?: Record<string, unknown>;
}

/** `n` distinct free loopback ports (all held open together, then released). */
function tool(name: string): string {
  return process.env[`${name.toUpperCase()}_BIN`] ?? name;
}

const NOT_INSTALLED =
  'not installed: `scripts/services/prometheus.sh install` (npm test and npm start do it)';

const closers = new Closers();
const namespace = `mon${randomBytes(4).toString('hex')}`;
let targets: ScrapeTarget[] = [];
let doorUrl = '';
const sent: Record<string, number[]> = {};
let acmeHit = false;

test.before(async () => {
  const ports = await freePorts(6);
  const door = await startFrontDoor(
    closers.add,
    (upstreamUrl) => {
      const doc = parse(readFileSync(path.join(ROOT, 'kong.yml'), 'utf8')) as {
        services: Array<{ url: string }>;
        plugins: Entry[];
      };
      for (const s of doc.services) s.url = upstreamUrl;
      const mock = new URL(upstreamUrl);
      let next = 0;
      for (const p of doc.plugins) {
        if (!p.config) continue;
        const c: Record<string, unknown> = { ...p.config };
        if ('metrics_port' in c) c.metrics_port = ports[next++];
        switch (p.name) {
          case 'tenant-ratelimit': {
            c.redis = { ...(c.redis as object), url: REDIS_URL, key_namespace: namespace };
            // globex (plan free): one request, then 429 — a refusal with a tenant and a reason.
            const plans = c.plans as Record<string, Record<string, unknown>>;
            plans.free = { ...plans.free, requests_per_minute: 1, request_burst: 1 };
            break;
          }
          case 'tenant-cache':
          case 'token-meter':
            c.redis = { ...(c.redis as object), url: REDIS_URL, key_namespace: namespace };
            break;
          case 'retrieval-injector':
            c.redis = { ...(c.redis as object), url: REDIS_URL, key_namespace: namespace };
            // A collection of its own: the shared one may hold chunks sealed under another
            // run's knowledge secret (an integrity refusal here, by design).
            c.milvus = { ...(c.milvus as object), address: MILVUS_ADDRESS, collection: namespace };
            c.embeddings = { ...(c.embeddings as object), url: `${upstreamUrl}/v1/embeddings` };
            break;
          case 'circuit-breaker':
            for (const u of Object.values(c.upstreams as Record<string, Record<string, unknown>>)) {
              u.host = mock.hostname;
              u.port = Number(mock.port);
            }
            break;
        }
        p.config = c;
      }
      targets = metricsTargets(doc);
      return doc as unknown as Record<string, unknown>;
    },
    { env: { KTA_KNOWLEDGE_SECRET: randomBytes(32).toString('hex') } },
  );
  doorUrl = door.url;
  closers.add(async () => {
    const milvus = await createMilvus({ address: MILVUS_ADDRESS, timeoutMs: 30_000 });
    try {
      const has = await milvus.hasCollection({ collection_name: namespace });
      if (has.value) await milvus.dropCollection({ collection_name: namespace });
    } finally {
      await milvus.closeConnection();
    }
  });
  // Per slot: a Redis Cluster refuses one DEL across slots (test/helpers/redis-cleanup.ts).
  closers.add(async () => {
    await deleteKeysMatching(REDIS_URL, `${namespace}*`);
  });
  const send1 = (key: string, body: Record<string, unknown>) =>
    send(`${doorUrl}/v1/chat/completions`, { headers: [['apikey', key]], body });
  const ask = async (key: string, body: Record<string, unknown>): Promise<number> =>
    (await send1(key, body)).status;
  // acme (pro): the same deterministic question again until a cache hit. The miss is stored in
  // its log phase, after the answer: asked at once, the second request may find nothing yet.
  const question = chat(`what is monitoring? ${namespace}`, { temperature: 0 });
  sent.acme = [await ask('acme-demo-key', question)];
  for (let i = 0; i < 20; i++) {
    const r = await send1('acme-demo-key', question);
    sent.acme.push(r.status);
    acmeHit = r.headers['x-cache-status'] === 'HIT';
    if (r.status !== 200 || acmeHit) break;
    await new Promise((res) => setTimeout(res, 250));
  }
  // globex (free, 1 request a minute here): served, then refused.
  sent.globex = [
    await ask('globex-demo-key', chat('hello')),
    await ask('globex-demo-key', chat('hello again')),
  ];
});

test.after.always(() => closers.closeAll());

async function scrapeAll(): Promise<{ exported: Exported; byPlugin: Map<string, string> }> {
  const exported = emptyExported();
  const byPlugin = new Map<string, string>();
  for (const t of targets) {
    const res = await fetch(`http://${t.host}:${t.port}/metrics`);
    if (res.status !== 200) throw new Error(`${t.plugin}: /metrics answered ${res.status}`);
    const text = await res.text();
    byPlugin.set(t.plugin, text);
    addExposition(exported, text);
  }
  return { exported, byPlugin };
}

function hasSample(e: Exported, name: string, labels: Record<string, string>): boolean {
  return (e.samples.get(name) ?? []).some((s) =>
    Object.entries(labels).every(([k, v]) => s[k] === v),
  );
}

test('the traffic went as planned: acme served until a cache hit, globex served then refused', (t) => {
  t.true(acmeHit && (sent.acme ?? []).every((s) => s === 200), JSON.stringify(sent.acme));
  t.deepEqual(sent.globex, [200, 429]);
});

test('every plugin server exports its tenants’ series after the traffic', async (t) => {
  t.is(targets.length, 6, 'kong.yml gives every plugin of the chain a metrics port');
  // Log-phase metrics land after the response: wait for the last of them.
  const { exported, byPlugin } = await eventually(async () => {
    const s = await scrapeAll();
    return hasSample(s.exported, 'token_meter_requests_total', { tenant: 'globex' }) &&
      hasSample(s.exported, 'tenant_cache_requests_total', { tenant: 'acme', status: 'hit' })
      ? s
      : undefined;
  }, 30_000);
  t.deepEqual([...byPlugin.keys()].sort(), targets.map((x) => x.plugin).sort());
  for (const tenant of ['acme', 'globex']) {
    t.true(hasSample(exported, 'tenant_auth_requests_total', { tenant }), tenant);
    t.true(hasSample(exported, 'token_meter_tokens_total', { tenant }), tenant);
    t.true(hasSample(exported, 'token_meter_cost_usd_total', { tenant }), tenant);
    t.true(hasSample(exported, 'tenant_ratelimit_queue_wait_seconds_bucket', { tenant }), tenant);
    t.true(hasSample(exported, 'circuit_breaker_outcomes_total', { tenant }), tenant);
    t.true(
      hasSample(exported, 'circuit_breaker_request_duration_seconds_bucket', { tenant }),
      `${tenant}: its requests' duration end to end`,
    );
  }
  t.true(hasSample(exported, 'tenant_cache_requests_total', { tenant: 'acme', status: 'hit' }));
  t.true(
    hasSample(exported, 'tenant_ratelimit_rejected_total', { tenant: 'globex' }),
    'the refusal is counted with its tenant and reason',
  );
});

test('the dashboard and the alert rules query only series the plugin servers export', async (t) => {
  const { exported } = await scrapeAll();
  const rules = RULE_FILES.map((f) => ruleExprs(readFileSync(f, 'utf8')));
  const recorded = new Set<string>(rules.flatMap((r) => [...r.recorded]));
  // Prometheus's own series: `up` per target, the alerts (ALERTS), the rules' recorded series.
  const extra = new Set([...recorded, 'up', 'ALERTS']);
  const dashboard = dashboardExprs(JSON.parse(readFileSync(DASHBOARD, 'utf8')) as unknown);
  const all = [
    ...dashboard.map((d) => ({
      where: `dashboard ${d.where}`,
      expr: expandGrafanaVariables(d.expr, { tenant: 'acme', datasource: 'prometheus' }),
    })),
    ...rules.flatMap((r) => r.exprs.map((e) => ({ where: `rule ${e.where}`, expr: e.expr }))),
  ];
  t.true(dashboard.length >= 30, `the dashboard has its panels (${dashboard.length} queries)`);
  const wrong = all.flatMap((q) =>
    problems(q.expr, exported, extra).map((p) => `${q.where}: ${p}`),
  );
  t.deepEqual(wrong, []);
  // The dashboard covers what the issue names, each by the metric that measures it.
  const used = new Set(all.flatMap((q) => [...q.expr.matchAll(/[a-z_:]+/g)].map((m) => m[0])));
  for (const name of [
    'tenant_auth_requests_total',
    'circuit_breaker_outcomes_total',
    'circuit_breaker_upstream_latency_seconds_bucket',
    'token_meter_tokens_total',
    'token_meter_cost_usd_total',
    'token_meter_budget_used_ratio',
    'tenant_cache_requests_total',
    'tenant_ratelimit_queue_wait_seconds_bucket',
    'tenant_ratelimit_rejected_total',
    'circuit_breaker_state',
    'circuit_breaker_request_duration_seconds_bucket',
  ]) {
    t.true(used.has(name), name);
  }
});

test('promtool accepts the compose config and the rules, and the rules pass their unit tests', async (t) => {
  const promtool = tool('promtool');
  const ok = async (args: string[]): Promise<string> => {
    try {
      const r = await run(promtool, args, { cwd: ROOT, timeout: 110_000 });
      return r.stdout + r.stderr;
    } catch (e) {
      const err = e as NodeJS.ErrnoException & { stdout?: string; stderr?: string };
      if (err.code === 'ENOENT') throw new Error(`promtool ${NOT_INSTALLED}`);
      throw new Error(`promtool ${args.join(' ')} failed:\n${err.stdout ?? ''}${err.stderr ?? ''}`);
    }
  };
  t.regex(await ok(['check', 'config', 'docker/prometheus/prometheus.yml']), /SUCCESS/);
  t.regex(await ok(['check', 'rules', ...RULE_FILES]), /SUCCESS/);
  t.true(RULE_TESTS.length >= RULE_FILES.length, 'a test file per rule file');
  t.regex(await ok(['test', 'rules', ...RULE_TESTS]), /SUCCESS/);
});

interface PromResponse<T> {
  status: string;
  data: T;
}

async function api<T>(base: string, p: string): Promise<T> {
  const res = await fetch(`${base}${p}`);
  const body = (await res.json()) as PromResponse<T>;
  if (body.status !== 'success') throw new Error(`${p}: ${JSON.stringify(body)}`);
  return body.data;
}

function startPrometheus(config: string, port: number): { child: ChildProcess; dir: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'kta-prom-'));
  const file = path.join(dir, 'prometheus.yml');
  writeFileSync(file, config);
  const child = spawn(
    tool('prometheus'),
    [
      `--config.file=${file}`,
      `--web.listen-address=127.0.0.1:${port}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return { child, dir };
}

test('the real Prometheus scrapes every plugin server and answers per-tenant queries', async (t) => {
  const [port] = await freePorts(1);
  const config = prometheusConfig(targets, {
    ruleFiles: RULE_FILES,
    scrapeInterval: '1s',
  });
  const { child, dir } = startPrometheus(config, port as number);
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString('utf8')).slice(-4000);
  });
  const exited = new Promise<Error>((resolve) => {
    child.on('error', (e: NodeJS.ErrnoException) =>
      resolve(e.code === 'ENOENT' ? new Error(`prometheus ${NOT_INSTALLED}`) : e),
    );
    child.on('exit', (code) => resolve(new Error(`prometheus exited (${code}): ${stderr}`)));
  });
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const base = `http://127.0.0.1:${port}`;
  const within = <T>(p: Promise<T>): Promise<T> =>
    Promise.race([p, exited.then((e) => Promise.reject(e))]);

  const up = await within(
    eventually(async () => {
      try {
        const d = await api<{
          activeTargets: Array<{ health: string; labels: Record<string, string> }>;
        }>(base, '/api/v1/targets');
        const healthy = d.activeTargets.filter((x) => x.health === 'up');
        return healthy.length === targets.length ? healthy : undefined;
      } catch {
        return undefined;
      }
    }, 60_000),
  );
  t.deepEqual(
    up.map((x) => x.labels.plugin).sort(),
    targets.map((x) => x.plugin).sort(),
    'every plugin server is a target, up',
  );

  const q = encodeURIComponent('sum by (tenant) (tenant_auth_requests_total)');
  const series = await within(
    eventually(async () => {
      const d = await api<{ result: Array<{ metric: { tenant?: string } }> }>(
        base,
        `/api/v1/query?query=${q}`,
      );
      const tenants = d.result.map((r) => r.metric.tenant ?? '').sort();
      return tenants.includes('acme') && tenants.includes('globex') ? tenants : undefined;
    }, 30_000),
  );
  t.deepEqual(series, ['acme', 'globex']);

  // Every dashboard query runs without an error for both tenants, and the panels the issue
  // names show data (rates need two scrapes in the window: poll until they do).
  const queries = dashboardExprs(JSON.parse(readFileSync(DASHBOARD, 'utf8')) as unknown).map(
    (d) => ({
      where: d.where,
      expr: expandGrafanaVariables(d.expr, { tenant: 'acme|globex', datasource: 'prometheus' }),
    }),
  );
  const mustShow = [
    'tenant_auth_requests_total',
    'token_meter_tokens_total',
    'token_meter_cost_usd_total',
    'token_meter_budget_used_ratio',
    'tenant_cache_requests_total{tenant=~"acme|globex",status="hit"}',
    'tenant_ratelimit_queue_wait_seconds_bucket',
    'tenant_ratelimit_rejected_total',
    'circuit_breaker_outcomes_total',
  ];
  let lastBlank: string[] = [];
  const empty = await within(
    eventually(async () => {
      const results = await Promise.all(
        queries.map(async (q) => {
          const d = await api<{ result: unknown[] }>(
            base,
            `/api/v1/query?query=${encodeURIComponent(q.expr)}`,
          );
          return { ...q, n: d.result.length };
        }),
      );
      const blank = mustShow.filter((m) =>
        results.filter((r) => r.expr.includes(m)).every((r) => r.n === 0),
      );
      lastBlank = blank;
      return blank.length === 0 ? blank : undefined;
    }, 30_000).catch(() => lastBlank),
  );
  t.deepEqual(empty, [], 'panels without data');

  // The rules are loaded and evaluate against the real series without an error.
  const groups = await within(
    eventually(async () => {
      const d = await api<{
        groups: Array<{
          name: string;
          rules: Array<{ name: string; health: string; lastError?: string }>;
        }>;
      }>(base, '/api/v1/rules');
      const rules = d.groups.flatMap((g) => g.rules);
      return rules.length > 0 && rules.every((r) => r.health !== 'unknown') ? d.groups : undefined;
    }, 30_000),
  );
  const expected = RULE_FILES.flatMap((f) =>
    (parse(readFileSync(f, 'utf8')) as { groups: Array<{ name: string }> }).groups.map(
      (g) => g.name,
    ),
  );
  t.deepEqual(groups.map((g) => g.name).sort(), expected.sort());
  const bad = groups
    .flatMap((g) => g.rules)
    .filter((r) => r.health !== 'ok')
    .map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`);
  t.deepEqual(bad, []);
});
