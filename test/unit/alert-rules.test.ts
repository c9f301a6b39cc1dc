/**
 * The alert rules, their promtool unit tests, the Alertmanager config and the dashboard hold
 * together: every alert is seen firing by some unit test and every recording rule is queried
 * by one, every alert about a tenant links the dashboard's drill-down for that tenant, and
 * Alertmanager groups by tenant and inhibits only alerts that exist. (promtool runs the unit
 * tests themselves: .ci/run and test/plugins/monitoring.test.ts.)
 */
import test from 'ava';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import {
  ALERTMANAGER_CONFIG,
  alertmanagerConfig,
} from '../../scripts/monitoring/alertmanager-config';
import { prometheusConfig } from '../../scripts/monitoring/prometheus-config';

const ROOT = path.resolve(__dirname, '..', '..');
const PROM = path.join(ROOT, 'docker', 'prometheus');

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

interface RuleTestFile {
  rule_files: string[];
  tests: Array<{
    alert_rule_test?: Array<{ alertname: string; exp_alerts?: unknown[] }>;
    promql_expr_test?: Array<{ expr: string }>;
  }>;
}

const ruleFiles = readdirSync(path.join(PROM, 'rules')).filter((f) => f.endsWith('.yml'));
const rules: Array<Rule & { file: string }> = ruleFiles.flatMap((f) =>
  (
    parse(readFileSync(path.join(PROM, 'rules', f), 'utf8')) as {
      groups: Array<{ rules: Rule[] }>;
    }
  ).groups.flatMap((g) => g.rules.map((r) => ({ ...r, file: f }))),
);
const testFiles = readdirSync(path.join(PROM, 'tests'))
  .filter((f) => f.endsWith('.yml'))
  .map((f) => parse(readFileSync(path.join(PROM, 'tests', f), 'utf8')) as RuleTestFile);
const dashboard = JSON.parse(
  readFileSync(path.join(ROOT, 'docker', 'grafana', 'dashboards', 'tenants.json'), 'utf8'),
) as { uid: string; templating: { list: Array<{ name: string }> } };

test('every rule file is loaded by a promtool test file', (t) => {
  const tested = new Set(testFiles.flatMap((f) => f.rule_files.map((r) => path.basename(r))));
  t.deepEqual(
    ruleFiles.filter((f) => !tested.has(f)),
    [],
  );
});

test('every alert fires in some promtool test, and every recording rule is queried by one', (t) => {
  const fired = new Set(
    testFiles.flatMap((f) =>
      f.tests.flatMap((c) =>
        (c.alert_rule_test ?? [])
          .filter((a) => (a.exp_alerts ?? []).length > 0)
          .map((a) => a.alertname),
      ),
    ),
  );
  const queried = testFiles.flatMap((f) =>
    f.tests.flatMap((c) => (c.promql_expr_test ?? []).map((q) => q.expr)),
  );
  const alerts = rules.filter((r) => r.alert).map((r) => r.alert as string);
  const records = rules.filter((r) => r.record).map((r) => r.record as string);
  t.true(
    alerts.length >= 20 && records.length >= 20,
    `${alerts.length} alerts, ${records.length} records`,
  );
  t.deepEqual(
    alerts.filter((a) => !fired.has(a)),
    [],
    'alerts no test sees firing',
  );
  t.deepEqual(
    records.filter((r) => !queried.some((q) => new RegExp(`(^|[^\\w:])${r}([^\\w:]|$)`).test(q))),
    [],
    'recording rules no test queries',
  );
});

test('every alert has a severity, a summary and a dashboard link; alerts about a tenant link its drill-down', (t) => {
  const link = new RegExp(`^https?://[^/]+/d/${dashboard.uid}/[\\w-]+\\?`);
  for (const r of rules.filter((x) => x.alert)) {
    const name = r.alert as string;
    t.regex(r.labels?.severity ?? '', /^(critical|warning|info)$/, name);
    t.truthy(r.annotations?.summary, name);
    const perTenant = /\$labels\.tenant/.test(r.annotations?.summary ?? '');
    const dash = r.annotations?.dashboard;
    t.regex(dash ?? '', link, `${name}: a link to dashboard ${dashboard.uid}`);
    if (perTenant) {
      t.regex(
        dash ?? '',
        /[?&]var-tenant=\{\{.*\$labels\.tenant.*\}\}/,
        `${name}: with its tenant`,
      );
    }
  }
  t.true(
    dashboard.templating.list.some((v) => v.name === 'tenant'),
    'the dashboard has the tenant variable the links set',
  );
});

test('Alertmanager groups by tenant, and its inhibit rules name alerts that exist', (t) => {
  const config = parse(readFileSync(ALERTMANAGER_CONFIG, 'utf8')) as {
    route: { receiver: string; group_by: string[] };
    receivers: Array<{ name: string; webhook_configs?: Array<{ url: string }> }>;
    inhibit_rules: Array<{ source_matchers: string[]; target_matchers: string[] }>;
  };
  t.deepEqual(config.route.group_by, ['tenant']);
  t.true(config.receivers.some((r) => r.name === config.route.receiver));
  const alerts = new Set(rules.map((r) => r.alert).filter(Boolean));
  const named = config.inhibit_rules.flatMap((i) =>
    [...i.source_matchers, ...i.target_matchers].map(
      (m) => /^alertname="(\w+)"$/.exec(m)?.[1] ?? `unparsed ${m}`,
    ),
  );
  t.deepEqual(
    named.filter((n) => !alerts.has(n)),
    [],
  );
});

test('alertmanagerConfig points every webhook at the given URL and sets the route timers', (t) => {
  const text = alertmanagerConfig(readFileSync(ALERTMANAGER_CONFIG, 'utf8'), {
    webhookUrl: 'https://hooks.example.com/kta?x=1',
    groupWait: '1s',
  });
  const c = parse(text) as {
    route: { group_wait: string; group_by: string[] };
    receivers: Array<{ webhook_configs?: Array<{ url: string }> }>;
  };
  const urls = c.receivers.flatMap((r) => (r.webhook_configs ?? []).map((w) => w.url));
  t.true(urls.length > 0);
  t.true(urls.every((u) => u === 'https://hooks.example.com/kta?x=1'));
  t.is(c.route.group_wait, '1s');
  t.deepEqual(c.route.group_by, ['tenant'], 'the rest as shipped');
  t.throws(() => alertmanagerConfig('route: {}\nreceivers: []\n', { webhookUrl: 'ftp://x/' }), {
    message: /http\(s\)/,
  });
  t.throws(() => alertmanagerConfig('global: {}\n'), { message: /not an Alertmanager/ });
});

test('the Prometheus config sends alerts to the Alertmanagers it is given, and none without', (t) => {
  const target = [{ plugin: 'a', host: '127.0.0.1', port: 9301 }];
  const withAm = parse(
    prometheusConfig(target, { ruleFiles: ['r/*.yml'], alertmanagers: ['127.0.0.1:9093'] }),
  ) as { alerting?: { alertmanagers: Array<{ static_configs: Array<{ targets: string[] }> }> } };
  t.deepEqual(withAm.alerting?.alertmanagers[0]?.static_configs[0]?.targets, ['127.0.0.1:9093']);
  const without = parse(prometheusConfig(target, { ruleFiles: ['r/*.yml'] })) as {
    alerting?: unknown;
  };
  t.is(without.alerting, undefined);
  const docker = parse(readFileSync(path.join(PROM, 'prometheus.yml'), 'utf8')) as {
    alerting?: { alertmanagers: Array<{ static_configs: Array<{ targets: string[] }> }> };
  };
  t.deepEqual(
    docker.alerting?.alertmanagers[0]?.static_configs[0]?.targets,
    ['127.0.0.1:9093'],
    "the compose stack's Alertmanager, in Kong's network namespace",
  );
});
