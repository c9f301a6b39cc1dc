/**
 * tenant-auth on the request path: PDK round trips per phase (from the harness counts) and
 * the latency the chain adds, as a ratio against calling the mock upstream directly in the
 * same run. Run: `npm run bench` (or `npx tsx bench/tenant-auth.ts` after `npm run build`).
 */
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { startGateway } from '../harness/index';
import { startMockUpstream } from '../mock-upstream/index';
import { percentile, table, writeSection } from './report';

const ROOT = path.resolve(__dirname, '..');
const N = Number(process.env.BENCH_REQUESTS ?? 300);

function request(
  url: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ ms: number; id: string; status: number }> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: body ? 'POST' : 'GET', headers, agent: false },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve({
            ms: Number(process.hrtime.bigint() - t0) / 1e6,
            id: String(res.headers['x-kong-request-id'] ?? ''),
            status: res.statusCode ?? 0,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function main(): Promise<void> {
  const load = os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');
  const upstream = await startMockUpstream();
  const plans = {
    pro: { tools_allowed: ['search'], persona: 'You are a pro assistant.', weight: 2 },
    open: { tools_allowed: ['*'], weight: 1 },
    free: { tools_allowed: [], weight: 1 },
  };
  const gateway = await startGateway({
    config: {
      _format_version: '3.0',
      services: [
        {
          name: 'llm',
          url: upstream.url,
          routes: [
            { name: 'ai', paths: ['/v1'], strip_path: false },
            { name: 'lean', paths: ['/lean'], strip_path: true },
          ],
        },
      ],
      plugins: [
        { name: 'key-auth', route: 'ai' },
        { name: 'key-auth', route: 'lean' },
        { name: 'tenant-auth', route: 'ai', config: { plans } },
        { name: 'tenant-auth', route: 'lean', config: { plans, validate_json_body: false } },
      ],
      consumers: [
        {
          username: 'a',
          custom_id: 'acme',
          tags: ['plan:pro'],
          keyauth_credentials: [{ key: 'ka' }],
        },
        {
          username: 'c',
          custom_id: 'initech',
          tags: ['plan:free'],
          keyauth_credentials: [{ key: 'kc' }],
        },
        {
          username: 'b',
          custom_id: 'globex',
          tags: ['plan:open'],
          keyauth_credentials: [{ key: 'kb' }],
        },
      ],
    },
    pluginServers: { 'tenant-auth': path.join(ROOT, 'dist', 'pluginservers', 'tenant-auth') },
  });

  const chat = JSON.stringify({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'hello there' }],
  });
  const json = { 'content-type': 'application/json' };
  const kinds: Array<{
    name: string;
    url: string;
    headers: Record<string, string>;
    body?: string;
  }> = [
    {
      name: 'direct to upstream (no gateway)',
      url: `${upstream.url}/v1/chat/completions`,
      headers: json,
      body: chat,
    },
    {
      name: 'GET, plan without body policy',
      url: `${gateway.url}/v1/models`,
      headers: { apikey: 'kb' },
    },
    {
      name: 'GET, plan with body policy (body read)',
      url: `${gateway.url}/v1/models`,
      headers: { apikey: 'ka' },
    },
    {
      name: 'chat, plan without body policy, validate_json_body off',
      url: `${gateway.url}/lean/v1/chat/completions`,
      headers: { ...json, apikey: 'kb' },
      body: chat,
    },
    {
      name: 'chat, plan without body policy, body validated',
      url: `${gateway.url}/v1/chat/completions`,
      headers: { ...json, apikey: 'kb' },
      body: chat,
    },
    {
      name: 'chat, tool policy, nothing to change',
      url: `${gateway.url}/v1/chat/completions`,
      headers: { ...json, apikey: 'kc' },
      body: chat,
    },
    {
      name: 'chat, persona + tool policy (body rewritten)',
      url: `${gateway.url}/v1/chat/completions`,
      headers: { ...json, apikey: 'ka' },
      body: chat,
    },
  ];

  // Warm up every path (JIT, sockets) before measuring.
  for (const k of kinds) for (let i = 0; i < 20; i++) await request(k.url, k.headers, k.body);

  const rows: Array<Array<string | number>> = [];
  let directP50 = NaN;
  for (const k of kinds) {
    const times: number[] = [];
    const rts = new Map<string, number>();
    let ms = 0;
    for (let i = 0; i < N; i++) {
      const r = await request(k.url, k.headers, k.body);
      if (r.status !== 200) throw new Error(`${k.name}: status ${r.status}`);
      times.push(r.ms);
      const stats = r.id ? gateway.requestStats(r.id) : undefined;
      const phase = stats?.plugins['tenant-auth']?.access;
      if (phase) {
        const calls = Object.values(phase.pdkCalls).reduce((a, b) => a + b, 0);
        const key = `${calls} / ${phase.roundTrips}`;
        rts.set(key, (rts.get(key) ?? 0) + 1);
        ms += phase.ms;
      }
    }
    times.sort((a, b) => a - b);
    const p50 = percentile(times, 50);
    if (Number.isNaN(directP50)) directP50 = p50;
    rows.push([
      k.name,
      rts.size ? [...rts.keys()].join('/') : '—',
      rts.size ? (ms / N).toFixed(2) : '—',
      p50.toFixed(2),
      percentile(times, 99).toFixed(2),
      (p50 / directP50).toFixed(2),
    ]);
  }
  await gateway.close();
  await upstream.close();

  const body = `## tenant-auth: PDK round trips and added latency

Command: \`npm run bench\` (bench/tenant-auth.ts), ${N} sequential requests per row after 20 warm-up
requests; harness gateway with key-auth + tenant-auth, mock upstream with no added latency.
"PDK calls / RPC exchanges" are the harness counts for tenant-auth's access phase: each PDK
call is one round trip to Kong, and one more exchange (HandleEvent) opens the phase (docs/harness.md); "x direct" is the p50 latency divided by the p50 of calling the upstream directly,
in the same run. The harness is Node, Kong is nginx and LuaJIT: the latencies show the shape,
the PDK call counts are what carries over to a real Kong. This route has no kong.yml PDK batch
snippet, so every call is its own exchange: tenant-auth's cost unbatched. With kong.yml's
snippets its access phase is 3 exchanges whatever the request (the chain section below).
Load average at the start: ${load}.

${table(['request', 'PDK calls / RPC exchanges (access)', 'access ms (mean)', 'p50 ms', 'p99 ms', 'x direct'], rows)}

Before (2026-11-27, before model tiers, the API surface and the content guard): 5 / 6 to 7 / 8
calls / exchanges, p50 3.67–4.48 ms (4.15–5.07× direct).`;
  writeSection('tenant-auth', body);
  process.stdout.write(`${body}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
