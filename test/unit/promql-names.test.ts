/**
 * The checker the monitoring test holds the dashboard and alert rules to (test/helpers/promql.ts):
 * metric names parsed from PromQL, resolved against a scrape with the suffix rules of each TYPE.
 */
import test from 'ava';
import {
  addExposition,
  dashboardExprs,
  emptyExported,
  expandGrafanaVariables,
  problems,
  selectors,
} from '../helpers/promql';

const SCRAPE = [
  '# HELP lat_seconds Latency.',
  '# TYPE lat_seconds histogram',
  'lat_seconds_bucket{le="0.1",upstream="llm"} 1',
  'lat_seconds_sum{upstream="llm"} 0.05',
  'lat_seconds_count{upstream="llm"} 1',
  '# HELP reqs_total Requests.',
  '# TYPE reqs_total counter',
  'reqs_total{tenant="acme",outcome="ok"} 3',
  '# HELP used_ratio Budget used.',
  '# TYPE used_ratio gauge',
  '# HELP wait_seconds Waits.',
  '# TYPE wait_seconds summary',
  '',
].join('\n');

const exported = addExposition(emptyExported(), SCRAPE);

test('selectors: every metric name of an expression, with its matcher labels', (t) => {
  t.deepEqual(
    selectors(
      'sum by (tenant) (rate(reqs_total{tenant=~"a|b",outcome!="ok"}[5m])) / on (tenant) group_left () x:y:z',
    ),
    [
      { metric: 'reqs_total', labels: ['tenant', 'outcome'] },
      { metric: 'x:y:z', labels: [] },
    ],
  );
  t.deepEqual(
    selectors('histogram_quantile(0.99, sum by (le) (rate(lat_seconds_bucket[5m])))').map(
      (s) => s.metric,
    ),
    ['lat_seconds_bucket'],
  );
});

test('selectors: a syntax error or a name-less selector is an error, not an empty list', (t) => {
  t.throws(() => selectors('sum(rate(reqs_total[5m])'), { message: /syntax error/ });
  t.throws(() => selectors('rate({__name__=~"reqs.*"}[5m])'), { message: /literal metric name/ });
});

test('suffix rules: _bucket/_sum/_count only where the TYPE has them', (t) => {
  t.deepEqual(problems('rate(lat_seconds_bucket[5m])', exported), []);
  t.deepEqual(problems('rate(lat_seconds_sum[5m]) / rate(lat_seconds_count[5m])', exported), []);
  // A histogram has no bare series; a gauge or counter has no _sum/_count/_bucket.
  t.deepEqual(problems('lat_seconds', exported), ['lat_seconds: no plugin server exports it']);
  t.deepEqual(problems('used_ratio_sum', exported), [
    'used_ratio_sum: no plugin server exports it',
  ]);
  t.deepEqual(problems('rate(reqs_bucket[5m])', exported), [
    'reqs_bucket: no plugin server exports it',
  ]);
  t.deepEqual(problems('rate(reqs[5m])', exported), ['reqs: no plugin server exports it']);
  // A summary has its bare quantile series, _sum and _count, no _bucket.
  t.deepEqual(problems('wait_seconds + wait_seconds_sum + wait_seconds_count', exported), []);
  t.deepEqual(problems('wait_seconds_bucket', exported), [
    'wait_seconds_bucket: no plugin server exports it',
  ]);
  // A declared family without samples yet still counts as exported.
  t.deepEqual(problems('used_ratio', exported), []);
});

test('labels: a matcher on a label the samples never carry is reported', (t) => {
  t.deepEqual(problems('reqs_total{tenant="acme",job="x"}', exported), []);
  t.deepEqual(problems('lat_seconds_bucket{tenant="acme"}', exported), [
    'lat_seconds_bucket: has no label tenant (it has le, upstream)',
  ]);
});

test('recording rules and up are known through extraNames', (t) => {
  const extra = new Set(['tenant:x:rate5m', 'up']);
  t.deepEqual(
    problems('tenant:x:rate5m > 2 * avg_over_time(tenant:x:rate5m[1d])', exported, extra),
    [],
  );
  t.deepEqual(problems('up == 0', exported, extra), []);
});

test('dashboards: expressions of nested panels and query variables, Grafana variables expanded', (t) => {
  const found = dashboardExprs({
    panels: [
      { title: 'a', targets: [{ expr: 'rate(reqs_total{tenant=~"$tenant"}[$__rate_interval])' }] },
      {
        type: 'row',
        panels: [{ title: 'b', targets: [{ expr: 'sum(used_ratio{tenant="${tenant}"})' }] }],
      },
    ],
    templating: {
      list: [
        { name: 'tenant', type: 'query', query: { query: 'label_values(reqs_total, tenant)' } },
      ],
    },
  });
  t.deepEqual(
    found.map((f) => expandGrafanaVariables(f.expr, { tenant: 'acme' })),
    ['rate(reqs_total{tenant=~"acme"}[5m])', 'sum(used_ratio{tenant="acme"})', 'reqs_total'],
  );
  t.throws(() => expandGrafanaVariables('x{a="$nope"}', {}), {
    message: /unknown Grafana variable/,
  });
});
