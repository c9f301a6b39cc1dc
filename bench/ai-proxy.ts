/**
 * token-meter's bill through Kong's ai-proxy, per provider format: `npm run bench -- ai-proxy`.
 *
 * For each provider (OpenAI, Mistral in OpenAI format, Anthropic, Gemini on Vertex AI, Cohere's
 * chat v1, Bedrock's Converse, Ollama through the llama2 driver, Hugging Face's chat API, Azure OpenAI),
 * kong.yml's chain on the real Kong 3.9.3 with ai-proxy and the recipe of docs/operations.md
 * ("Beside Kong's AI plugins": the usage reader before ai-proxy), tenant acme sends REQUESTS
 * chats, every other one streamed, with varying questions; then its ledger in Redis is compared,
 * to the token, with what the provider stub billed (the mock's usage; the Gemini stub's for
 * Gemini). Writes section `ai-proxy` of docs/benchmarks.md. Needs Redis and Milvus running
 * (REDIS_URL, MILVUS_ADDRESS) and the built plugins (`npm run build`).
 */
import { execSync } from 'node:child_process';
import os from 'node:os';
import { ask, ledgerTotals, startProviderDoor, type Provider } from '../test/helpers/ai-proxy-door';
import { Closers } from '../test/helpers/frontdoor';
import { table, writeSection } from './report';

// Kong's AI plugins run on the real Kong only (the harness refuses them).
process.env.GATEWAY = 'kong';
const REQUESTS = Number(process.env.BENCH_AI_PROXY_REQUESTS ?? 40);
const PROVIDERS: Provider[] = [
  'openai',
  'mistral',
  'anthropic',
  'gemini',
  'cohere',
  'bedrock',
  'llama2',
  'huggingface',
  'azure',
];

async function run(closers: Closers, provider: Provider): Promise<Array<string | number>> {
  {
    const d = await startProviderDoor(closers, provider);
    const statuses: Record<number, number> = {};
    let streamed = 0;
    for (let i = 0; i < REQUESTS; i++) {
      const stream = i % 2 === 1;
      if (stream) streamed++;
      const words = 'tell me more about the launch plan and its budget'.split(' ');
      const { res } = await ask(
        d,
        'acme',
        {
          model: d.model,
          stream,
          messages: [{ role: 'user', content: `${i}: ${words.slice(0, 3 + (i % 7)).join(' ')}?` }],
        },
        // Kong 3.9.3 sends a Bedrock stream to the configured upstream_url: the stub's cue.
        stream && provider === 'bedrock' ? { 'x-mock-bedrock-stream': '1' } : {},
      );
      statuses[res.status] = (statuses[res.status] ?? 0) + 1;
    }
    // Log phases run after the answers: wait for every entry.
    const until = Date.now() + 20_000;
    let ledger = await ledgerTotals(d, 'acme');
    while (ledger.entries < REQUESTS && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 250));
      ledger = await ledgerTotals(d, 'acme');
    }
    const billed = d.billed();
    const exact = ledger.prompt === billed.prompt && ledger.completion === billed.completion;
    return [
      provider,
      `${REQUESTS - streamed} + ${streamed}`,
      Object.entries(statuses)
        .map(([s, n]) => `${s}×${n}`)
        .join(' '),
      ledger.entries,
      `${ledger.prompt} / ${ledger.completion}`,
      `${billed.prompt} / ${billed.completion}`,
      ledger.estimated,
      exact ? '**exact**' : '**differs**',
    ];
  }
}

async function main(): Promise<void> {
  const rows: Array<Array<string | number>> = [];
  // One set of closers for the run: the doors share the process's Redis clients.
  const closers = new Closers();
  try {
    for (const p of PROVIDERS) {
      process.stdout.write(`ai-proxy: ${p}…\n`);
      rows.push(await run(closers, p));
    }
  } finally {
    await closers.closeAll();
  }
  const commit = execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim();
  const body = `## token-meter through Kong's ai-proxy, per provider format

\`npm run bench -- ai-proxy\` (or \`npx tsx bench/ai-proxy.ts\` with the services running and
\`npm run build\` done), on ${commit}: kong.yml's chain with ai-proxy and the recipe of
docs/operations.md ("Beside Kong's AI plugins"), ${REQUESTS} chats per provider (JSON + streamed),
tenant acme; the ledger in Redis against what the provider stub billed, in tokens (prompt /
completion). Load average at the start: ${os.loadavg()[0]?.toFixed(1)}.

${table(
  [
    'provider',
    'requests (JSON + streamed)',
    'statuses',
    'ledger entries',
    'ledger tokens',
    'provider billed',
    'estimated entries',
    'bill',
  ],
  rows,
)}
`;
  writeSection('ai-proxy', body);
  process.stdout.write(`${body}\n`);
  const bad = rows.filter((r) => r[7] !== '**exact**' || r[6] !== 0);
  if (bad.length > 0) process.exitCode = 1;
}

void main();
