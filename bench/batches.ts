/**
 * token-meter's bill for the Batches API: `npm run bench -- batches`.
 *
 * kong.yml's chain (`store: scoped`, files and batches served to acme) on the gateway GATEWAY
 * names (the real Kong by default): BATCHES batch input files of LINES chat lines each are
 * uploaded as forms, a batch made of each (reserved at creation from the file's lines), then
 * read once finished (settled from the provider's `usage`). Compares the ledger, to the token,
 * with the usage the provider reported on the batches, and the reservations with what was
 * spent: the reservation must never be below the bill (every line's bound), the bill must equal
 * the provider's. A second round runs batches whose provider reports no usage: billed at the
 * bound, estimated, never below what the provider generated. Writes section `batches` of
 * docs/benchmarks.md. Needs Redis and Milvus running and `npm run build`.
 */
import os from 'node:os';
import { execSync } from 'node:child_process';
import { chatLine, json, startBatchDoor, type BatchDoor } from '../test/helpers/batch-door';
import { Closers, eventually } from '../test/helpers/frontdoor';
import { table, writeSection } from './report';

process.env.GATEWAY ??= 'kong';
const BATCHES = Number(process.env.BENCH_BATCHES ?? 10);
const LINES = Number(process.env.BENCH_BATCH_LINES ?? 20);
/** gpt-4o-mini in kong.yml, nano-USD per token, at the batch price (× 0.5). */
const PRICE = { prompt: 75, completion: 300 };

interface Round {
  readonly reservedTokens: number;
  readonly ledgerPrompt: number;
  readonly ledgerCompletion: number;
  readonly ledgerCost: number;
  readonly providerPrompt: number;
  readonly providerCompletion: number;
  readonly estimated: number;
  readonly entries: number;
}

async function round(d: BatchDoor, usage: 'reported' | 'none'): Promise<Round> {
  let reservedTokens = 0;
  let providerPrompt = 0;
  let providerCompletion = 0;
  const ids: string[] = [];
  for (let b = 0; b < BATCHES; b++) {
    // Varying questions and bounds: the answers' lengths and the bounds differ per line.
    const lines = Array.from({ length: LINES }, (_, i) =>
      chatLine(b * LINES + i, { max_tokens: 8 + ((i * 7) % 40) }),
    );
    const fileId = await d.uploaded('acme', lines);
    const before = new Set(await d.reservations('acme'));
    const made = await d.create('acme', fileId, usage === 'none' ? { mock_usage: 'none' } : {});
    if (made.res.status !== 200) throw new Error(`batch: ${made.res.status} ${made.res.text}`);
    const id = String(json(made).id);
    await d.opened('acme', id);
    for (const rid of (await d.reservations('acme')).filter((r) => !before.has(r))) {
      reservedTokens += Number(
        String(await d.redis.hGet(d.budgetKey('acme'), `r:${rid}`)).split(' ')[0],
      );
    }
    const read = await d.call('acme', 'GET', `/v1/batches/${id}`);
    const batch = json(read);
    if (batch.status !== 'completed') throw new Error(`batch ${id}: ${String(batch.status)}`);
    // What the provider generated, from the output file when it reports no usage.
    const out = await d.call('acme', 'GET', `/v1/files/${String(batch.output_file_id)}/content`);
    for (const l of out.res.text.trim().split('\n')) {
      const u = (JSON.parse(l) as { response: { body: { usage: Record<string, number> } } })
        .response.body.usage;
      providerPrompt += u.prompt_tokens ?? 0;
      providerCompletion += u.completion_tokens ?? 0;
    }
    ids.push(id);
  }
  const entries = await eventually(async () => {
    const all = (await d.ledger('acme')).filter((e) => ids.includes(e.batch_id ?? ''));
    return all.length === ids.length ? all : undefined;
  }, 20_000);
  const sum = (f: string) => entries.reduce((n, e) => n + Number(e[f]), 0);
  return {
    reservedTokens,
    ledgerPrompt: sum('prompt'),
    ledgerCompletion: sum('completion'),
    ledgerCost: sum('cost_nusd'),
    providerPrompt,
    providerCompletion,
    estimated: entries.filter((e) => e.estimated === '1').length,
    entries: entries.length,
  };
}

async function main(): Promise<void> {
  const closers = new Closers();
  const rows: Array<Array<string | number>> = [];
  let ok = true;
  try {
    const d = await startBatchDoor(closers.add, 'scoped');
    for (const usage of ['reported', 'none'] as const) {
      process.stdout.write(`batches: usage ${usage}…\n`);
      const r = await round(d, usage);
      const billed = r.ledgerPrompt + r.ledgerCompletion;
      const generated = r.providerPrompt + r.providerCompletion;
      const exact =
        r.ledgerPrompt === r.providerPrompt && r.ledgerCompletion === r.providerCompletion;
      const costExact =
        usage === 'none' ||
        r.ledgerCost ===
          Math.ceil(r.providerPrompt * PRICE.prompt + r.providerCompletion * PRICE.completion);
      const verdict =
        usage === 'reported'
          ? exact && costExact && r.estimated === 0
            ? '**exact**'
            : '**differs**'
          : r.estimated === r.entries && r.ledgerCompletion >= r.providerCompletion
            ? '**at the bound, never below**'
            : '**below what was generated**';
      if (verdict.includes('differs') || verdict.includes('below what')) ok = false;
      if (r.reservedTokens < billed && usage === 'reported') ok = false;
      rows.push([
        usage === 'reported' ? 'usage reported' : 'no usage reported',
        `${BATCHES} × ${LINES}`,
        r.entries,
        `${r.ledgerPrompt} / ${r.ledgerCompletion}`,
        `${r.providerPrompt} / ${r.providerCompletion}`,
        r.estimated,
        `${r.reservedTokens} (${(r.reservedTokens / Math.max(1, generated)).toFixed(2)}× generated)`,
        verdict,
      ]);
    }
  } finally {
    await closers.closeAll();
  }
  const commit = execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim();
  const body = `## token-meter and the Batches API

\`npm run bench -- batches\` (bench/batches.ts), on ${commit}, gateway ${process.env.GATEWAY}:
kong.yml's chain with files and batches served to acme (\`store: scoped\`), ${BATCHES} batches of
${LINES} chat lines each (bounds 8–47 tokens), each input file uploaded as a form, the batch
made of it (reserved at creation from its lines) and read once finished (settled from the
provider's \`usage\`). Ledger and provider in tokens (prompt / completion); the provider's from
the output files' lines. Reserved: what the batches held from creation to settlement (every
line's prompt estimate and bound). Load average at the start: ${os.loadavg()[0]?.toFixed(1)}.

${table(
  [
    'provider reports',
    'batches × lines',
    'ledger entries',
    'ledger tokens',
    'provider generated',
    'estimated entries',
    'reserved tokens',
    'bill',
  ],
  rows,
)}
`;
  writeSection('batches', body);
  process.stdout.write(`${body}\n`);
  if (!ok) process.exitCode = 1;
}

void main();
