/**
 * `npm run eval`: every tenant's eval set (evals/<tenant>/) through the chain, a table of
 * pass rates per tenant with the failed cases, and the gate: exit 1 when any tenant is below
 * its recorded baseline (evals/baseline.json), whatever the average does. scripts/eval.sh
 * builds and brings up Redis and Milvus first; this is the part that needs them up.
 *
 *   npm run eval                              # the real Kong (else the harness), mock upstream
 *   npm run eval -- --record-baseline         # write the rates of this run as the baseline
 *   npm run eval -- --tenant acme             # one tenant's set
 *   EVAL_BASE_URL=https://api.openai.com/v1 EVAL_API_KEY=sk-… npm run eval   # a real provider
 *   EVAL_FRONTDOOR_URL=http://127.0.0.1:8000 npm run eval                   # a running front door
 *
 * Exit codes: 0 the gate passed (or a baseline was recorded), 1 a tenant is below its
 * baseline, 2 bad arguments or a bad case file, 3 the stack did not start.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { locateKong } from '../kong-runner/index';
import { EvalFormatError, loadEvalSets } from './eval/format';
import {
  BaselineFormatError,
  baselineFrom,
  gate,
  parseBaseline,
  renderReport,
  summarise,
  type Baseline,
} from './eval/gate';
import { runEvalSets } from './eval/run';
import { existingFrontDoor, startEvalStack, type EvalTarget } from './eval/stack';

const ROOT = path.resolve(
  __dirname,
  '..',
  existsSync(path.join(__dirname, '..', 'package.json')) ? '' : '..',
);

const USAGE = `usage: npm run eval -- [--dir evals] [--baseline FILE] [--record-baseline]
                        [--tenant ID]... [--config kong.yml] [--json FILE]
environment: EVAL_GATEWAY=kong|harness; EVAL_BASE_URL + EVAL_API_KEY (a real provider behind
the chain); EVAL_FRONTDOOR_URL [+ EVAL_MOCK_URL] (a running front door); EVAL_API_KEY_<TENANT>;
REDIS_URL, MILVUS_ADDRESS. See evals/README.md.`;

class UsageError extends Error {}

const secs = (since: number) => ((Date.now() - since) / 1000).toFixed(1);

function gatewayKind(): 'kong' | 'harness' {
  const wanted = process.env.EVAL_GATEWAY ?? process.env.GATEWAY;
  if (wanted !== undefined && wanted !== 'kong' && wanted !== 'harness')
    throw new UsageError(`EVAL_GATEWAY must be kong or harness, got ${wanted}`);
  if (wanted) return wanted;
  if (locateKong()) return 'kong';
  process.stderr.write(
    'eval: no Kong 3.9 installed (scripts/services/kong.sh install): running on the harness\n',
  );
  return 'harness';
}

function readBaseline(file: string): Baseline {
  if (!existsSync(file)) return { version: 1, tenants: {} };
  return parseBaseline(JSON.parse(readFileSync(file, 'utf8')) as unknown);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      dir: { type: 'string', default: path.join(ROOT, 'evals') },
      baseline: { type: 'string' },
      'record-baseline': { type: 'boolean', default: false },
      tenant: { type: 'string', multiple: true },
      config: { type: 'string', default: path.join(ROOT, 'kong.yml') },
      json: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const env = process.env;
  const dir = path.resolve(values.dir);
  const sets = loadEvalSets(dir, ROOT, env, values.tenant);
  if (sets.length === 0) throw new UsageError(`no tenant eval sets under ${dir}`);
  const provider = env.EVAL_BASE_URL
    ? { baseUrl: env.EVAL_BASE_URL, apiKey: env.EVAL_API_KEY }
    : undefined;
  // A real model answers differently from the mock (and `requires: real` cases apply): its
  // rates are gated against a baseline of their own.
  const realUpstream =
    provider !== undefined || (env.EVAL_FRONTDOOR_URL !== undefined && !env.EVAL_MOCK_URL);
  const baselineFile = path.resolve(
    values.baseline ??
      env.EVAL_BASELINE ??
      path.join(dir, realUpstream ? 'baseline.real.json' : 'baseline.json'),
  );
  const baseline = readBaseline(baselineFile);

  let target: EvalTarget;
  const t0 = Date.now();
  try {
    target = env.EVAL_FRONTDOOR_URL
      ? existingFrontDoor(env.EVAL_FRONTDOOR_URL, env.EVAL_MOCK_URL)
      : await startEvalStack({
          root: ROOT,
          configFile: path.resolve(values.config),
          gateway: gatewayKind(),
          redisUrl: env.REDIS_URL ?? 'redis://127.0.0.1:6379',
          milvusAddress: env.MILVUS_ADDRESS ?? '127.0.0.1:19530',
          ...(provider ? { provider } : {}),
          knowledge: Object.fromEntries(sets.map((s) => [s.tenant, s.knowledge])),
          logger: (line) => process.stderr.write(`${line}\n`),
        });
  } catch (e) {
    if (e instanceof UsageError) throw e;
    process.stderr.write(
      `eval: the stack did not start: ${e instanceof Error ? e.message : String(e)}\n`,
    );
    return 3;
  }
  const run = randomBytes(4).toString('hex');
  const total = sets.reduce((n, s) => n + s.cases.length, 0);
  process.stdout.write(
    `eval: ${total} cases, ${sets.length} tenants, on ${target.description} (up in ${secs(t0)} s)\n`,
  );
  const t1 = Date.now();
  let outcomes;
  try {
    outcomes = await runEvalSets(target, sets, run);
  } finally {
    await target.close();
  }
  process.stdout.write(`eval: cases ran in ${secs(t1)} s\n`);
  if (values.json) {
    mkdirSync(path.dirname(path.resolve(values.json)), { recursive: true });
    writeFileSync(values.json, `${JSON.stringify(outcomes, null, 2)}\n`);
  }
  const summaries = summarise(outcomes);
  const notes: string[] = [];
  if (values['record-baseline']) {
    const recorded = baselineFrom(summaries);
    // Tenants not run this time keep their entries: recording one tenant's set changes only it.
    const merged: Baseline = { version: 1, tenants: { ...baseline.tenants, ...recorded.tenants } };
    writeFileSync(baselineFile, `${JSON.stringify(merged, null, 2)}\n`);
    for (const s of summaries) {
      const old = baseline.tenants[s.tenant];
      if (old && s.rate < old.rate)
        notes.push(`note: ${s.tenant}'s baseline LOWERED from ${old.rate} to ${s.rate}`);
    }
    notes.push(
      `baseline recorded in ${path.relative(process.cwd(), baselineFile) || baselineFile}`,
    );
    const result = gate(summaries, merged);
    process.stdout.write(`${renderReport({ ...result, missing: [] }, notes)}\n`);
    return 0;
  }
  const onlySome = values.tenant !== undefined;
  const compared: Baseline = onlySome
    ? {
        version: 1,
        tenants: Object.fromEntries(
          Object.entries(baseline.tenants).filter(([t]) => values.tenant?.includes(t)),
        ),
      }
    : baseline;
  const result = gate(summaries, compared);
  notes.push(`baseline: ${path.relative(process.cwd(), baselineFile) || baselineFile}`);
  process.stdout.write(`${renderReport(result, notes)}\n`);
  return result.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    const known =
      e instanceof UsageError || e instanceof EvalFormatError || e instanceof BaselineFormatError;
    process.stderr.write(
      `eval: ${e instanceof Error ? e.message : String(e)}\n${known ? `${USAGE}\n` : ''}`,
    );
    process.exit(known ? 2 : 3);
  },
);
