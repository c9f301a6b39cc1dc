/**
 * What the monitoring tests need to hold a dashboard and alert rules to the metrics the plugin
 * servers really export: the metric selectors of a PromQL expression (Prometheus's own lezer
 * grammar, @prometheus-io/lezer-promql), and the series names and labels a `/metrics` scrape
 * offers (the text exposition format).
 */
import { parser } from '@prometheus-io/lezer-promql';
import { parse } from 'yaml';

type SyntaxNode = ReturnType<typeof parser.parse>['topNode'];

export interface Selector {
  metric: string;
  /** Label names its matchers test. */
  labels: string[];
}

/** Grafana's variables, replaced by values PromQL accepts before an expression is parsed. */
export function expandGrafanaVariables(expr: string, values: Record<string, string>): string {
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (whole, braced?: string, bare?: string) => {
    const name = braced ?? bare ?? '';
    if (name.startsWith('__')) return '5m'; // $__rate_interval, $__interval, $__range
    const v = values[name];
    if (v === undefined) throw new Error(`unknown Grafana variable ${whole} in ${expr}`);
    return v;
  });
}

function childrenNamed(node: SyntaxNode, name: string): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  for (let c = node.firstChild; c; c = c.nextSibling) if (c.name === name) out.push(c);
  return out;
}

/**
 * The vector selectors of `expr`: metric name and the label names of its matchers. Throws on a
 * syntax error and on a selector without a literal metric name (`{__name__=~"..."}`), which no
 * check could hold to an exported name.
 */
export function selectors(expr: string): Selector[] {
  const tree = parser.parse(expr);
  const out: Selector[] = [];
  let error: number | undefined;
  tree.iterate({
    enter: (ref) => {
      if (ref.type.isError) error ??= ref.from;
      if (ref.name !== 'VectorSelector') return;
      const node = ref.node;
      const id = childrenNamed(node, 'Identifier')[0];
      const labels: string[] = [];
      for (const m of childrenNamed(node, 'LabelMatchers')) {
        for (let c = m.firstChild; c; c = c.nextSibling) {
          const ln = childrenNamed(c, 'LabelName')[0];
          if (ln) labels.push(expr.slice(ln.from, ln.to));
        }
      }
      if (!id || labels.includes('__name__')) {
        throw new Error(`a selector without a literal metric name in: ${expr}`);
      }
      out.push({ metric: expr.slice(id.from, id.to), labels });
    },
  });
  if (error !== undefined) {
    throw new Error(`PromQL syntax error at ${error}: ${expr}`);
  }
  return out;
}

/** Series names one metric family offers in the text format, by its TYPE. */
export function seriesNamesOf(family: string, type: string): string[] {
  switch (type) {
    case 'histogram':
      return [`${family}_bucket`, `${family}_sum`, `${family}_count`];
    case 'summary':
      return [family, `${family}_sum`, `${family}_count`];
    default:
      // counter (prom-client's names end in _total already), gauge, untyped
      return [family];
  }
}

export interface Exported {
  /** Every series name a query may select (histogram suffixes expanded by TYPE). */
  names: Set<string>;
  /** Label names seen on samples, by series name (only for series that have samples). */
  labels: Map<string, Set<string>>;
  /** Label value sets seen on samples, by series name. */
  samples: Map<string, Array<Record<string, string>>>;
}

export function emptyExported(): Exported {
  return { names: new Set(), labels: new Map(), samples: new Map() };
}

/** Adds one `/metrics` body (Prometheus text format 0.0.4) to `into`. */
export function addExposition(into: Exported, text: string): Exported {
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      for (const n of seriesNamesOf(type[1] as string, type[2] as string)) into.names.add(n);
      continue;
    }
    if (line === '' || line.startsWith('#')) continue;
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+/.exec(line);
    if (!sample) throw new Error(`not a sample line: ${line}`);
    const name = sample[1] as string;
    into.names.add(name);
    const labels: Record<string, string> = {};
    for (const m of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[m[1] as string] = m[2] as string;
    }
    const seen = into.labels.get(name) ?? new Set<string>();
    for (const k of Object.keys(labels)) seen.add(k);
    into.labels.set(name, seen);
    const list = into.samples.get(name) ?? [];
    list.push(labels);
    into.samples.set(name, list);
  }
  return into;
}

/** Labels Prometheus adds to every scraped series (job, instance, and the config's target labels). */
export const TARGET_LABELS = ['job', 'instance', 'plugin'];

/**
 * What is wrong with the selectors of `expr` against what is exported: unknown metric names,
 * and matchers on labels the metric's samples never carry. `extraNames` are series Prometheus
 * makes itself (recording rules, `up`).
 */
export function problems(
  expr: string,
  exported: Exported,
  extraNames: ReadonlySet<string> = new Set(),
): string[] {
  const out: string[] = [];
  for (const s of selectors(expr)) {
    if (extraNames.has(s.metric)) continue;
    if (!exported.names.has(s.metric)) {
      out.push(`${s.metric}: no plugin server exports it`);
      continue;
    }
    const seen = exported.labels.get(s.metric);
    if (!seen) continue;
    for (const l of s.labels) {
      if (!seen.has(l) && !TARGET_LABELS.includes(l) && l !== 'le') {
        out.push(`${s.metric}: has no label ${l} (it has ${[...seen].join(', ')})`);
      }
    }
  }
  return out;
}

/** Every PromQL expression of a Grafana dashboard: panel targets (rows nested) and query variables. */
export function dashboardExprs(dashboard: unknown): Array<{ where: string; expr: string }> {
  const out: Array<{ where: string; expr: string }> = [];
  const d = dashboard as {
    panels?: unknown[];
    templating?: { list?: Array<{ name: string; type: string; query?: unknown }> };
  };
  const visit = (panels: unknown[] | undefined): void => {
    for (const p of panels ?? []) {
      const panel = p as { title?: string; targets?: Array<{ expr?: string }>; panels?: unknown[] };
      for (const t of panel.targets ?? []) {
        if (typeof t.expr === 'string') out.push({ where: `panel ${panel.title}`, expr: t.expr });
      }
      visit(panel.panels);
    }
  };
  visit(d.panels);
  for (const v of d.templating?.list ?? []) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : (v.query as { query?: string })?.query;
    // label_values(metric, label) is Grafana's, not PromQL: its first argument is a selector.
    const m = /^label_values\((.+),\s*\w+\)$/.exec(q ?? '');
    if (m) out.push({ where: `variable ${v.name}`, expr: m[1] as string });
    else if (q) out.push({ where: `variable ${v.name}`, expr: q });
  }
  return out;
}

/** The expressions of a Prometheus rules file, and the series its recording rules make. */
export function ruleExprs(yamlText: string): {
  exprs: Array<{ where: string; expr: string }>;
  recorded: Set<string>;
} {
  const doc = parse(yamlText) as {
    groups: Array<{
      name: string;
      rules: Array<{ record?: string; alert?: string; expr: string }>;
    }>;
  };
  const exprs: Array<{ where: string; expr: string }> = [];
  const recorded = new Set<string>();
  for (const g of doc.groups) {
    for (const r of g.rules) {
      if (r.record) recorded.add(r.record);
      exprs.push({ where: `${g.name}/${r.record ?? r.alert ?? '?'}`, expr: String(r.expr) });
    }
  }
  return { exprs, recorded };
}
