/**
 * The overnight-spend alert, end to end, on the real programs: Debian's Prometheus with the
 * repo's rules (docker/prometheus/rules/*.yml) and a config from the repo's generator, Debian's
 * Alertmanager with the repo's config (docker/alertmanager/alertmanager.yml), and a webhook
 * receiver here that records what Alertmanager posts.
 *
 * Four tenants' spend (token_meter_cost_usd_total, as token-meter exports it): a day and more
 * of history written into Prometheus's TSDB with promtool's backfill, then the same counters
 * served live on a /metrics endpoint that Prometheus scrapes. 90 minutes ago acme's spend
 * tripled; initech's doubled (a busy day), umbrella's tripled under the $0.50/h floor, globex's
 * stayed. The platform total rose by half. The webhook must be told of acme, and of nobody
 * else, and the platform alert must not fire.
 *
 * Only the timers are shortened (rules' `for` to 2 s, evaluation and scrape every second,
 * Prometheus's resend delay 1 s,
 * Alertmanager's group wait 1 s): the expressions, labels, annotations and routing are the
 * shipped ones. promtool's unit tests (docker/prometheus/tests/) hold the `for` durations.
 */
import test from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import {
  accessSync,
  constants,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import {
  ALERTMANAGER_CONFIG,
  alertmanagerConfig,
} from '../../scripts/monitoring/alertmanager-config';
import { JOB_NAME, ROOT, prometheusConfig } from '../../scripts/monitoring/prometheus-config';
import { freePorts } from '../../harness/free-port';

const run = promisify(execFile);
const RULES_DIR = path.join(ROOT, 'docker', 'prometheus', 'rules');
const HOUR_S = 3600;

function tool(name: string, fallback: string[] = []): string {
  const env = process.env[`${name.toUpperCase().replace(/-/g, '_')}_BIN`];
  if (env) return env;
  for (const candidate of [name, ...fallback]) {
    for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
      try {
        accessSync(path.join(dir, candidate), constants.X_OK);
        return path.join(dir, candidate);
      } catch {
        // not in this directory
      }
    }
  }
  throw new Error(
    `${name} is not installed: scripts/services/prometheus.sh install (npm test and npm start do it)`,
  );
}

/** One tenant's spend: `before` USD/h until the change, `after` since. */
interface Spend {
  tenant: string;
  model: string;
  before: number;
  after: number;
}

const SPEND: Spend[] = [
  { tenant: 'acme', model: 'gpt-4o', before: 1.2, after: 3.6 }, // tripled overnight
  { tenant: 'globex', model: 'gpt-4o-mini', before: 6, after: 6 }, // steady, the largest
  { tenant: 'initech', model: 'gpt-4o', before: 2.4, after: 4.8 }, // doubled: under 2.5x
  { tenant: 'umbrella', model: 'gpt-4o-mini', before: 0.12, after: 0.36 }, // tripled, under the floor
];

const NOW_S = Math.floor(Date.now() / 1000);
/** History starts 27 h back; the change came 90 minutes ago. */
const START_S = NOW_S - 27 * HOUR_S;
const CHANGE_S = NOW_S - 90 * 60;

/** The counter's value at `t` (seconds): what token-meter would have settled by then. */
function costAt(s: Spend, t: number): number {
  const before = Math.max(0, Math.min(t, CHANGE_S) - START_S);
  const after = Math.max(0, t - CHANGE_S);
  return (s.before * before + s.after * after) / HOUR_S;
}

function labels(s: Spend, extra: Record<string, string>): string {
  return Object.entries({ ...extra, model: s.model, tenant: s.tenant })
    .map(([k, v]) => `${k}="${v}"`)
    .join(',');
}

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

async function poll<T>(what: string, check: () => Promise<T | undefined>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `${what}: not within ${ms} ms${last ? ` (last error: ${String(last)})` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface Notification {
  receiver: string;
  status: string;
  groupLabels: Record<string, string>;
  alerts: Array<{
    status: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
  }>;
}

interface Child {
  child: ChildProcess;
  exited: Promise<Error>;
  output: () => string;
}

function startChild(bin: string, args: string[]): Child {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (c: Buffer) => {
    out = (out + c.toString('utf8')).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<Error>((resolve) => {
    child.on('error', resolve);
    child.on('exit', (code) => resolve(new Error(`${bin} exited (${code}): ${out}`)));
  });
  return { child, exited, output: () => out };
}

async function stopChild(c: Child): Promise<void> {
  if (c.child.exitCode === null && c.child.signalCode === null) {
    c.child.kill('SIGTERM');
    await c.exited;
  }
}

interface PromResponse<T> {
  status: string;
  data: T;
}

async function api<T>(url: string): Promise<T> {
  const res = await fetch(url);
  const body = (await res.json()) as PromResponse<T>;
  if (body.status !== 'success') throw new Error(`${url}: ${JSON.stringify(body)}`);
  return body.data;
}

async function query(base: string, expr: string): Promise<Map<string, number>> {
  const d = await api<{
    result: Array<{ metric: Record<string, string>; value: [number, string] }>;
  }>(`${base}/api/v1/query?query=${encodeURIComponent(expr)}`);
  return new Map(d.result.map((r) => [r.metric.tenant ?? '', Number(r.value[1])]));
}

test('a tenant whose spend triples overnight is notified through Alertmanager, and no one else', async (t) => {
  const promtool = tool('promtool');
  const prometheus = tool('prometheus');
  const alertmanager = tool('prometheus-alertmanager', ['alertmanager']);
  const dir = mkdtempSync(path.join(tmpdir(), 'kta-alerting-'));
  const children: Child[] = [];
  const servers: http.Server[] = [];
  t.teardown(async () => {
    for (const c of children.reverse()) await stopChild(c);
    for (const s of servers) s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  // The webhook receiver: what Alertmanager delivers, in order.
  const notifications: Notification[] = [];
  const receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      notifications.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Notification);
      res.writeHead(200).end();
    });
  });
  servers.push(receiver);
  const receiverPort = await listen(receiver);

  // The live counters, as a plugin server's /metrics.
  const exporter = http.createServer((_req, res) => {
    const now = Date.now() / 1000;
    const lines = [
      '# HELP token_meter_cost_usd_total Cost settled.',
      '# TYPE token_meter_cost_usd_total counter',
    ];
    for (const s of SPEND)
      lines.push(`token_meter_cost_usd_total{${labels(s, {})}} ${costAt(s, now)}`);
    res
      .writeHead(200, { 'content-type': 'text/plain; version=0.0.4' })
      .end(`${lines.join('\n')}\n`);
  });
  servers.push(exporter);
  const exporterPort = await listen(exporter);
  const target = { plugin: 'token-meter', host: '127.0.0.1', port: exporterPort };

  // The history, one sample a minute up to a minute ago, under the labels the scrape gives
  // (job, instance, and the generator's plugin label), so that history and live are one series.
  const scraped = { instance: `127.0.0.1:${exporterPort}`, job: JOB_NAME, plugin: 'token-meter' };
  const history = [
    '# HELP token_meter_cost_usd Cost settled.',
    '# TYPE token_meter_cost_usd counter',
  ];
  for (const s of SPEND) {
    for (let ts = START_S; ts <= NOW_S - 60; ts += 60) {
      history.push(`token_meter_cost_usd_total{${labels(s, scraped)}} ${costAt(s, ts)} ${ts}`);
    }
  }
  history.push('# EOF');
  const historyFile = path.join(dir, 'history.om');
  writeFileSync(historyFile, `${history.join('\n')}\n`);
  const dataDir = path.join(dir, 'data');
  await run(promtool, ['tsdb', 'create-blocks-from', 'openmetrics', historyFile, dataDir], {
    timeout: 120_000,
  });

  // The repo's rules with their `for` shortened; nothing else changed.
  const ruleFiles: string[] = [];
  for (const f of readdirSync(RULES_DIR).filter((n) => n.endsWith('.yml'))) {
    const doc = parse(readFileSync(path.join(RULES_DIR, f), 'utf8')) as {
      groups: Array<{ rules: Array<{ for?: string }> }>;
    };
    for (const g of doc.groups) for (const r of g.rules) if (r.for) r.for = '2s';
    const out = path.join(dir, f);
    writeFileSync(out, stringify(doc));
    ruleFiles.push(out);
  }

  const [amPort, promPort] = (await freePorts(2)) as [number, number];
  const amDir = path.join(dir, 'alertmanager');
  const amConfig = path.join(dir, 'alertmanager.yml');
  writeFileSync(
    amConfig,
    alertmanagerConfig(readFileSync(ALERTMANAGER_CONFIG, 'utf8'), {
      webhookUrl: `http://127.0.0.1:${receiverPort}/alerts`,
      groupWait: '1s',
      groupInterval: '1s',
      repeatInterval: '1h',
    }),
  );
  const am = startChild(alertmanager, [
    `--config.file=${amConfig}`,
    `--web.listen-address=127.0.0.1:${amPort}`,
    '--cluster.listen-address=',
    `--storage.path=${amDir}`,
  ]);
  children.push(am);

  const promConfig = path.join(dir, 'prometheus.yml');
  writeFileSync(
    promConfig,
    prometheusConfig([target], {
      ruleFiles,
      scrapeInterval: '1s',
      evaluationInterval: '1s',
      alertmanagers: [`127.0.0.1:${amPort}`],
    }),
  );
  const prom = startChild(prometheus, [
    `--config.file=${promConfig}`,
    `--web.listen-address=127.0.0.1:${promPort}`,
    `--storage.tsdb.path=${dataDir}`,
    // Firing alerts are sent again every minute by default: the first ones go out before the
    // Alertmanager is discovered (its static target is picked up after ~5 s).
    '--rules.alert.resend-delay=1s',
  ]);
  children.push(prom);
  const died = Promise.race([am.exited, prom.exited]).then((e) => Promise.reject(e));
  const within = <T>(p: Promise<T>): Promise<T> => Promise.race([p, died]);
  const base = `http://127.0.0.1:${promPort}`;

  // The baselines are what the scenario says (history and live counters were read).
  const ratios = await within(
    poll(
      'per-tenant spend ratios',
      async () => {
        const r = await query(
          base,
          'tenant:token_meter_cost_usd:rate1h / tenant:token_meter_cost_usd:rate1h_offset1d',
        );
        return r.size === SPEND.length ? r : undefined;
      },
      120_000,
    ),
  );
  const near = (v: number | undefined, want: number) =>
    v !== undefined && Math.abs(v - want) < 0.25;
  t.true(near(ratios.get('acme'), 3), `acme ${ratios.get('acme')}`);
  t.true(near(ratios.get('initech'), 2), `initech ${ratios.get('initech')}: under 2.5x`);
  t.true(
    near(ratios.get('umbrella'), 3),
    `umbrella ${ratios.get('umbrella')}: 3x, but under the floor`,
  );
  t.true(near(ratios.get('globex'), 1), `globex ${ratios.get('globex')}`);
  const platform = await query(
    base,
    'platform:token_meter_cost_usd:rate1h / platform:token_meter_cost_usd:rate1h_offset1d',
  );
  t.true(near(platform.get(''), 14.76 / 9.72), `the platform total rose ${platform.get('')}x`);

  // Alertmanager tells the webhook about acme.
  const first = await within(
    poll(
      'the webhook hears of the spend alert',
      async () =>
        notifications.find((n) =>
          n.alerts.some((a) => a.labels.alertname === 'TenantSpendAboveBaseline'),
        ),
      120_000,
    ),
  );
  t.is(first.receiver, 'tenant-webhook');
  t.deepEqual(first.groupLabels, { tenant: 'acme' }, 'grouped by tenant');
  const alert = first.alerts.find((a) => a.labels.alertname === 'TenantSpendAboveBaseline');
  t.is(alert?.status, 'firing');
  t.is(alert?.labels.tenant, 'acme');
  t.is(alert?.labels.severity, 'warning');
  t.regex(
    alert?.annotations.summary ?? '',
    /^Tenant acme spends 3\.\dx its rate of the same hour yesterday$/,
  );
  t.regex(alert?.annotations.dashboard ?? '', /\/d\/kta-tenants\/[^?]*\?var-tenant=acme&/);

  // Then several more evaluations and group intervals: still acme alone, everywhere.
  const firedAt = Date.now();
  await within(
    poll(
      'five more evaluations of the spend rules',
      async () => {
        const d = await api<{ groups: Array<{ name: string; lastEvaluation: string }> }>(
          `${base}/api/v1/rules`,
        );
        const g = d.groups.find((x) => x.name === 'kta-spend-alerts');
        return g && Date.parse(g.lastEvaluation) > firedAt + 5000 ? g : undefined;
      },
      60_000,
    ),
  );
  const firing = await api<{ alerts: Array<{ state: string; labels: Record<string, string> }> }>(
    `${base}/api/v1/alerts`,
  );
  t.deepEqual(
    firing.alerts.map((a) => `${a.labels.alertname}:${a.labels.tenant ?? ''}:${a.state}`).sort(),
    ['TenantSpendAboveBaseline:acme:firing'],
    'Prometheus: the tenant alert for acme, no platform alert',
  );
  const inAlertmanager = (await (
    await fetch(`http://127.0.0.1:${amPort}/api/v2/alerts`)
  ).json()) as Array<{ labels: Record<string, string> }>;
  t.deepEqual(
    inAlertmanager.map((a) => `${a.labels.alertname}:${a.labels.tenant ?? ''}`),
    ['TenantSpendAboveBaseline:acme'],
  );
  const delivered = new Set(
    notifications.flatMap((n) =>
      n.alerts.map(
        (a) => `${n.groupLabels.tenant ?? ''}/${a.labels.alertname}:${a.labels.tenant ?? ''}`,
      ),
    ),
  );
  t.deepEqual(
    [...delivered],
    ['acme/TenantSpendAboveBaseline:acme'],
    'the webhook heard of acme only',
  );
});
