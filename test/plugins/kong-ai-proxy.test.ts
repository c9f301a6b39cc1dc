/**
 * The chain beside Kong's own AI plugins on one route (issue 21 part 3; the recipe in
 * docs/operations.md, "Beside Kong's AI plugins"), on the real Kong 3.9.3 with kong.yml's chain:
 *
 * - `ai-proxy` with provider `anthropic`, its upstream the mock's Anthropic Messages stub
 *   (mock-upstream/anthropic.ts), which refuses what Anthropic refuses (a `system` role among the
 *   messages, no `max_tokens`, no `anthropic-version`). retrieval-injector (priority 790) writes
 *   the tenant's context before ai-proxy (770) converts the body, so the context arrives in
 *   Anthropic's top-level `system`; with `inject: merged_system_message` the persona and the
 *   context are one system prompt (ai-proxy keeps only the last system message). token-meter's
 *   usage reader runs in pre-function's body_filter (the recipe), before ai-proxy converts the
 *   answer, so JSON and streamed answers are billed as the provider billed, to the token.
 * - `ai-proxy` with provider `openai` and `ai-prompt-decorator`: the decorator's messages, the
 *   persona, retrieval's context, `model`, `stream` and the meter's usage request all reach the
 *   upstream; a streamed answer is billed exactly.
 * - `ai-proxy` with provider `mistral` (OpenAI format), Kong's `rate-limiting` and `file-log`:
 *   billed exactly; file-log's lines carry no tenant key, provider key or prompt text.
 * - `ai-proxy` with provider `gemini` (Vertex AI mode, a TLS stub: mock-upstream/gemini.ts):
 *   persona and context in `systemInstruction`; JSON and streamed (a JSON array with cumulative
 *   usage) answers billed to Gemini's count.
 * - `ai-proxy` with provider `cohere` (Chat API v1 stub: mock-upstream/cohere.ts, which refuses
 *   OpenAI's `messages`): JSON and streamed (one JSON object per line) answers billed to Cohere's
 *   `billed_units`, not its larger `tokens`.
 * - `ai-proxy` with provider `bedrock` (a Converse stub: mock-upstream/bedrock.ts, SigV4
 *   header required): JSON and ConverseStream (AWS's binary event stream) answers billed to
 *   Bedrock's `usage` exactly; persona and context in Converse's `system`.
 * - `ai-proxy` with provider `llama2`, `llama2_format: ollama` (Ollama's chat stub:
 *   mock-upstream/ollama.ts): JSON and NDJSON-streamed answers, which carry no `usage` object,
 *   billed to Ollama's `prompt_eval_count` and `eval_count` exactly; the meter's bound reaches
 *   Ollama as `options.num_predict`.
 * - `ai-proxy` with provider `llama2`, `llama2_format: raw` (a stub that reports no usage at
 *   all): where usage cannot be had the ledger says so — estimated, with its basis (the
 *   tokenizer's prompt and the completion bound), never below what the stub generated.
 * - `ai-proxy` with provider `azure` (Azure OpenAI, OpenAI's format, Kong's `api-version`):
 *   JSON and streamed answers billed exactly.
 * - `ai-proxy` with provider `huggingface` (its chat API, OpenAI's format): Kong 3.9.3's driver
 *   drops `max_tokens` for `parameters.max_lenght` (sic), which the API ignores; kong.yml's
 *   transform guard gives the meter's bound back, so the answer stays within what was reserved;
 *   JSON and streamed answers billed exactly.
 * - Kong's `acl` (950), after tenant-auth and tenant-ratelimit: a tenant outside the allowed
 *   group is refused 403, reaches no upstream, is not billed and leaves no lease held.
 *
 * Real Kong only: the harness runs none of Kong's AI plugins; there it checks that it refuses a
 * config naming one rather than run the chain without it.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import {
  ACME_PERSONA,
  ask,
  CODENAME,
  BEDROCK,
  CLAUDE,
  COHERE,
  GEMINI,
  HUGGINGFACE,
  OLLAMA,
  ledgerEntries,
  ledgerEntry,
  ledgerEqualsUpstream,
  PROVIDER_KEY,
  startDoor,
  startProviderDoor,
  type EntryConfig,
} from '../helpers/ai-proxy-door';
import { Closers, gatewayKind } from '../helpers/frontdoor';
import { startKongYmlDoor } from '../helpers/kong-yml-door';
import { createKeyspace } from '../../lib/redis/keys';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { periodAt } from '../../plugins/token-meter/period';

const DECORATOR_FIRST = 'DECORATOR-PREPENDED-RULE';
const DECORATOR_LAST = 'DECORATOR-APPENDED-NOTE';

const question = (tag: string) => ({
  role: 'user',
  content: `What is the launch codename? (${tag})`,
});

if (gatewayKind() === 'kong') {
  const closers = new Closers();
  test.after.always(() => closers.closeAll());

  test.serial(
    "ai-proxy to Anthropic: context and persona in Anthropic's system prompt, billed as the provider billed",
    async (t) => {
      const d = await startProviderDoor(closers, 'anthropic');

      const { res, upstream } = await ask(d, 'acme', {
        model: CLAUDE,
        messages: [question('json')],
      });
      t.is(res.status, 200, res.text);
      t.truthy(upstream, 'the request reached the Anthropic stub');
      t.is(upstream?.path, '/v1/messages');
      const sent = upstream?.json as { system?: string; messages: Array<{ role: string }> };
      t.deepEqual(
        sent.messages.map((m) => m.role),
        ['user'],
        'no system role among Anthropic messages',
      );
      t.true(sent.system?.includes(ACME_PERSONA), `the persona is in system: ${sent.system}`);
      t.true(sent.system?.includes(CODENAME), "acme's knowledge is in system");
      const answer = res.json as { usage: { prompt_tokens: number; completion_tokens: number } };
      const entry = await ledgerEntry(d, 'acme', res);
      t.is(entry.estimated, '0');
      t.is(
        Number(entry.prompt),
        answer.usage.prompt_tokens,
        'prompt tokens as the provider billed',
      );
      t.is(Number(entry.completion), answer.usage.completion_tokens);
      t.is(entry.model, CLAUDE);
      const billed = d.door.upstream.usage().acme;
      t.is(billed?.prompt, answer.usage.prompt_tokens, "the stub's own count agrees");

      // Streamed: the usage reader, before ai-proxy, reads Anthropic's own events.
      const s = await ask(d, 'acme', { model: CLAUDE, stream: true, messages: [question('sse')] });
      t.is(s.res.status, 200, s.res.text);
      t.true(s.res.text.includes('data: '), 'an SSE stream');
      const streamed = await ledgerEntry(d, 'acme', s.res);
      const usage = d.door.upstream.usage().acme;
      t.is(streamed.estimated, '0', 'a stream billed from the provider usage');
      t.is(
        Number(streamed.prompt),
        (usage?.prompt ?? 0) - answer.usage.prompt_tokens,
        'streamed prompt tokens as the provider billed',
      );
      t.is(
        Number(streamed.completion),
        (usage?.completion ?? 0) - answer.usage.completion_tokens,
        'streamed completion tokens as the provider billed',
      );

      // Isolation: globex (another tenant, same route) gets none of acme's knowledge or persona.
      const g = await ask(d, 'globex', { model: CLAUDE, messages: [question('globex')] });
      t.is(g.res.status, 200, g.res.text);
      const gs = JSON.stringify(g.upstream?.json ?? {});
      t.false(gs.includes(CODENAME), "globex's request carries none of acme's knowledge");
      t.false(gs.includes(ACME_PERSONA), "nor acme's persona");
      t.false(g.res.text.includes(CODENAME));
    },
  );

  test.serial(
    'ai-proxy (openai) with ai-prompt-decorator: every rewrite composes, a stream is billed exactly',
    async (t) => {
      const d = await startDoor(
        closers,
        [
          {
            name: 'ai-prompt-decorator',
            route: 'ai',
            config: {
              prompts: {
                prepend: [{ role: 'system', content: DECORATOR_FIRST }],
                append: [{ role: 'user', content: DECORATOR_LAST }],
              },
            },
          },
          {
            name: 'ai-proxy',
            route: 'ai',
            config: {
              route_type: 'llm/v1/chat',
              auth: { header_name: 'Authorization', header_value: `Bearer ${PROVIDER_KEY}` },
              model: { provider: 'openai', options: {} },
            },
          },
        ],
        (p, u) => {
          const c = p.config as EntryConfig;
          if (p.name === 'ai-proxy') c.model.options.upstream_url = `${u}/v1/chat/completions`;
          if (p.name === 'tenant-auth') (c.tenants.acme ?? {}).persona = ACME_PERSONA;
          if (p.name === 'circuit-breaker') {
            c.upstreams = {};
            c.plans = {};
          }
        },
      );
      // The provider compresses JSON for a client that accepts it, as OpenAI does; ai-proxy asks
      // for gzip itself, so kong.yml's post-function asks for identity again (transform-guard.lua).
      d.door.upstream.configure({ gzipJson: true });
      for (const stream of [false, true]) {
        const { res, upstream } = await ask(
          d,
          'acme',
          { model: 'gpt-4o-mini', stream, messages: [question(`decorated ${stream}`)] },
          { 'accept-encoding': 'gzip, deflate' },
        );
        t.is(res.status, 200, res.text);
        t.is(upstream?.headers['accept-encoding'], 'identity', 'the provider asked for identity');
        const body = upstream?.json as {
          model?: string;
          stream?: boolean;
          stream_options?: { include_usage?: boolean };
          messages: Array<{ role: string; content: string }>;
        };
        t.is(body.model, 'gpt-4o-mini', 'model kept');
        t.is(body.stream ?? false, stream, 'stream kept');
        const texts = body.messages.map((m) => m.content);
        t.is(texts[0], DECORATOR_FIRST, "the decorator's prepended message first");
        t.is(texts.at(-1), DECORATOR_LAST, "the decorator's appended message last");
        t.true(
          texts.some((x) => x.includes(ACME_PERSONA)),
          'the persona kept',
        );
        t.true(
          texts.some((x) => x.includes(CODENAME)),
          "retrieval's context kept",
        );
        const entry = await ledgerEntry(d, 'acme', res);
        t.is(entry.estimated, '0', 'billed from the usage, not estimated');
        if (stream) {
          t.true(body.stream_options?.include_usage, "the meter's usage request kept");
        }
      }
      await ledgerEqualsUpstream(t, d, 'acme');
      d.door.upstream.configure({ gzipJson: false });
    },
  );
  test.serial(
    'ai-proxy (mistral, OpenAI format) with rate-limiting and file-log: billed exactly, no key or prompt in the log',
    async (t) => {
      const logDir = mkdtempSync(path.join(tmpdir(), 'kta-file-log-'));
      closers.add(() => rmSync(logDir, { recursive: true, force: true }));
      const logFile = path.join(logDir, 'requests.log');
      const d = await startDoor(
        closers,
        [
          {
            name: 'ai-proxy',
            route: 'ai',
            config: {
              route_type: 'llm/v1/chat',
              auth: { header_name: 'Authorization', header_value: `Bearer ${PROVIDER_KEY}` },
              model: { provider: 'mistral', options: { mistral_format: 'openai' } },
            },
          },
          { name: 'rate-limiting', route: 'ai', config: { minute: 1000, policy: 'local' } },
          { name: 'file-log', route: 'ai', config: { path: logFile } },
        ],
        (p, u) => {
          const c = p.config as EntryConfig;
          if (p.name === 'ai-proxy') c.model.options.upstream_url = `${u}/v1/chat/completions`;
          if (p.name === 'circuit-breaker') {
            c.upstreams = {};
            c.plans = {};
          }
        },
      );
      const secretPrompt = `PROMPT-${randomBytes(4).toString('hex')}`;
      for (const stream of [false, true]) {
        const { res, upstream } = await ask(d, 'acme', {
          model: 'gpt-4o-mini',
          stream,
          messages: [{ role: 'user', content: `${secretPrompt} ${stream}` }],
        });
        t.is(res.status, 200, res.text);
        t.truthy(res.headers['x-ratelimit-limit-minute'], "Kong's rate-limiting ran");
        t.is(
          upstream?.headers.authorization,
          `Bearer ${PROVIDER_KEY}`,
          "the provider key is ai-proxy's",
        );
        const entry = await ledgerEntry(d, 'acme', res);
        t.is(entry.estimated, '0', `billed from the usage (stream ${stream})`);
      }
      await ledgerEqualsUpstream(t, d, 'acme');
      // file-log writes after the response: wait for both lines.
      const until = Date.now() + 10_000;
      let log = '';
      while (Date.now() < until) {
        log = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
        if (log.split('\n').filter(Boolean).length >= 2) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      t.true(log.split('\n').filter(Boolean).length >= 2, 'file-log wrote a line per request');
      t.false(log.includes('acme-demo-key'), "no tenant key in file-log's lines");
      t.false(log.includes(PROVIDER_KEY), 'no provider key');
      t.false(log.includes(secretPrompt), 'no prompt text');
    },
  );
  test.serial(
    "Kong's acl after tenant-auth: a refused tenant reaches no upstream, is not billed, holds no lease",
    async (t) => {
      const d = await startDoor(
        closers,
        [{ name: 'acl', route: 'ai', config: { allow: ['ai-users'] } }],
        () => undefined,
        { 'acme-app': { acls: [{ group: 'ai-users' }] } },
      );
      const ok = await ask(d, 'acme', { model: 'gpt-4o-mini', messages: [question('acl ok')] });
      t.is(ok.res.status, 200, ok.res.text);
      t.truthy(ok.upstream, 'a member of the group is served');
      const refused = await Promise.all(
        [1, 2, 3].map((i) =>
          ask(d, 'globex', { model: 'gpt-4o-mini', messages: [question(`acl ${i}`)] }),
        ),
      );
      for (const r of refused) {
        t.is(r.res.status, 403, r.res.text);
        t.is(r.upstream, undefined, 'nothing reached the upstream');
      }
      // Log phases run after the answer: give them a moment, then nothing of globex's is held.
      await new Promise((r) => setTimeout(r, 1500));
      const ledger = await d.redis.xLen(
        createKeyspace(`${d.door.namespace}tm`).usageLedger(
          parseTenantId('globex'),
          periodAt('month', Date.now()).id,
        ),
      );
      t.is(ledger, 0, 'no ledger entry for refused requests');
      const held: string[] = [];
      let globexSets = 0;
      for await (const keys of d.redis.scanIterator({
        MATCH: `${d.door.namespace}*`,
        COUNT: 500,
      })) {
        for (const key of ([] as string[]).concat(keys)) {
          if (!key.includes('{t:globex}')) continue;
          globexSets += 1;
          if ((await d.redis.type(key)) !== 'zset') continue;
          const live = await d.redis.zCount(key, Date.now(), '+inf');
          if (live > 0) held.push(`${key}: ${live}`);
        }
      }
      // tenant-ratelimit (1000) admitted globex before acl (950) refused: its keys exist (an
      // emptied set is removed by Redis, so a released lease leaves none).
      t.true(globexSets > 0, "tenant-ratelimit's keys of globex exist (it ran before acl)");
      t.deepEqual(held, [], 'no lease, seat or reservation of globex left held');
    },
  );
  test.serial(
    "ai-proxy to Gemini (Vertex AI, over TLS): Gemini's cumulative usage billed exactly, streamed and not",
    async (t) => {
      const d = await startProviderDoor(closers, 'gemini');
      const gemini = d.gemini;
      if (!gemini) return t.fail('no Gemini stub');
      for (const stream of [false, true]) {
        const { res } = await ask(d, 'acme', {
          model: GEMINI,
          stream,
          messages: [question(`gemini ${stream}`)],
        });
        t.is(res.status, 200, res.text);
        if (stream) t.true(res.text.startsWith('data: '), 'the client gets an SSE stream');
        const entry = await ledgerEntry(d, 'acme', res);
        t.is(entry.estimated, '0', `billed from Gemini's usage (stream ${stream})`);
      }
      t.deepEqual(
        gemini.paths.map((x) => x.split(':').at(-1)),
        ['generateContent', 'streamGenerateContent'],
        'both reached the Gemini stub, the second as a stream',
      );
      const sent = gemini.requests[0] as { systemInstruction?: { parts: Array<{ text: string }> } };
      const system = sent.systemInstruction?.parts.map((x) => x.text).join('') ?? '';
      t.true(system.includes(ACME_PERSONA), 'the persona in systemInstruction');
      t.true(system.includes(CODENAME), "acme's knowledge in systemInstruction");
      const entries = await ledgerEntries(d, 'acme');
      const sum = (f: string) => entries.reduce((n, e) => n + Number(e[f] ?? 0), 0);
      t.is(sum('prompt'), gemini.billed.prompt, "ledger prompt tokens = Gemini's");
      t.is(sum('completion'), gemini.billed.completion, "ledger completion tokens = Gemini's");
    },
  );
  test.serial(
    'ai-proxy to Cohere (chat v1): billed_units billed exactly, streamed and not, persona and context in chat_history',
    async (t) => {
      const d = await startProviderDoor(closers, 'cohere');
      for (const stream of [false, true]) {
        const { res, upstream } = await ask(d, 'acme', {
          model: COHERE,
          stream,
          messages: [question(`cohere ${stream}`)],
        });
        t.is(res.status, 200, res.text);
        t.is(upstream?.path, '/v1/chat', 'the request reached the Cohere stub');
        if (stream) t.true(res.text.includes('data: '), 'the client gets an SSE stream');
        const entry = await ledgerEntry(d, 'acme', res);
        t.is(entry.estimated, '0', `billed from Cohere's billed_units (stream ${stream})`);
        t.is(entry.model, COHERE);
        const sent = upstream?.json as {
          message: string;
          chat_history?: Array<{ role: string; message: string }>;
        };
        t.true(sent.message.includes('launch codename'), 'the question is the last turn');
        const history = JSON.stringify(sent.chat_history ?? []);
        t.true(history.includes(ACME_PERSONA), 'the persona reaches Cohere in chat_history');
        t.true(history.includes(CODENAME), "acme's knowledge reaches Cohere in chat_history");
      }
      // The ledger equals what the stub billed (billed_units), to the token, streamed and not.
      await ledgerEqualsUpstream(t, d, 'acme');
    },
  );
  test.serial(
    "ai-proxy to Bedrock (Converse): billed to Bedrock's usage exactly, JSON and the binary event stream",
    async (t) => {
      const d = await startProviderDoor(closers, 'bedrock');
      for (const stream of [false, true]) {
        const { res, upstream } = await ask(
          d,
          'acme',
          { model: BEDROCK, stream, messages: [question(`bedrock ${stream}`)] },
          // With upstream_url set, Kong 3.9.3 sends a stream to the same URL: the stub's cue.
          stream ? { 'x-mock-bedrock-stream': '1' } : {},
        );
        t.is(res.status, 200, res.text);
        t.truthy(upstream?.path.endsWith('/converse'), 'the request reached the Bedrock stub');
        if (stream) t.true(res.text.includes('data: '), 'the client gets an SSE stream');
        const entry = await ledgerEntry(d, 'acme', res);
        t.is(entry.estimated, '0', `billed from Bedrock's usage (stream ${stream})`);
        t.is(entry.model, BEDROCK);
        const sent = upstream?.json as { system?: Array<{ text: string }>; messages: unknown[] };
        const system = (sent.system ?? []).map((x) => x.text).join('');
        t.true(system.includes(ACME_PERSONA), 'the persona in Converse system');
        t.true(system.includes(CODENAME), "acme's knowledge in Converse system");
      }
      await ledgerEqualsUpstream(t, d, 'acme');
    },
  );
  test.serial(
    "ai-proxy to Ollama (llama2 driver): billed to Ollama's own counts, JSON and the NDJSON stream",
    async (t) => {
      const d = await startProviderDoor(closers, 'llama2');
      for (const stream of [false, true]) {
        const { res, upstream } = await ask(d, 'acme', {
          model: OLLAMA,
          stream,
          max_tokens: 40,
          messages: [question(`ollama ${stream}`)],
        });
        t.is(res.status, 200, res.text);
        t.is(upstream?.path, '/api/chat', 'the request reached the Ollama stub');
        const sent = upstream?.json as {
          model: string;
          stream: boolean;
          messages: Array<{ role: string; content: string }>;
          options?: { num_predict?: number };
        };
        t.is(sent.model, OLLAMA);
        t.is(sent.stream, stream, 'stream said explicitly (Ollama streams by default)');
        t.is(sent.options?.num_predict, 40, "the meter's bound reaches Ollama as num_predict");
        const system = sent.messages
          .filter((m) => m.role === 'system')
          .map((m) => m.content)
          .join('');
        t.true(system.includes(ACME_PERSONA), 'the persona in a system message');
        t.true(system.includes(CODENAME), "acme's knowledge in a system message");
        if (stream) t.true(res.text.includes('data: '), 'the client gets an SSE stream');
        else {
          const answer = res.json as {
            usage: { prompt_tokens: number; completion_tokens: number };
          };
          t.true(answer.usage.prompt_tokens > 0, 'ai-proxy answers with usage from Ollama');
        }
        const entry = await ledgerEntry(d, 'acme', res);
        t.is(entry.estimated, '0', `billed from Ollama's counts (stream ${stream})`);
        t.is(entry.model, OLLAMA);
      }
      // Ollama has no usage object: the ledger equals its prompt_eval_count and eval_count.
      await ledgerEqualsUpstream(t, d, 'acme');
    },
  );
  test.serial(
    "ai-proxy to Hugging Face: the meter's bound Kong's driver drops comes back, billed exactly",
    async (t) => {
      const d = await startProviderDoor(closers, 'huggingface');
      for (const stream of [false, true]) {
        const { res, upstream } = await ask(d, 'acme', {
          model: HUGGINGFACE,
          stream,
          max_tokens: 5,
          messages: [question(`hf ${stream}`)],
        });
        t.is(res.status, 200, res.text);
        t.is(upstream?.path, '/v1/chat/completions', 'the request reached the chat API');
        const sent = upstream?.json as { model: string; max_tokens?: number };
        t.is(sent.model, HUGGINGFACE);
        t.is(sent.max_tokens, 5, "the meter's bound reaches Hugging Face as max_tokens");
        const entry = await ledgerEntry(d, 'acme', res);
        t.is(entry.estimated, '0', `billed from the answer's usage (stream ${stream})`);
        t.is(Number(entry.completion), 5, 'the answer stopped at the bound');
        t.is(entry.model, HUGGINGFACE);
      }
      await ledgerEqualsUpstream(t, d, 'acme');
    },
  );
  test.serial('ai-proxy to Azure OpenAI: billed exactly, JSON and streamed', async (t) => {
    const d = await startProviderDoor(closers, 'azure');
    for (const stream of [false, true]) {
      const { res, upstream } = await ask(d, 'acme', {
        model: 'gpt-4o-mini',
        stream,
        messages: [question(`azure ${stream}`)],
      });
      t.is(res.status, 200, res.text);
      t.regex(
        upstream?.path ?? '',
        /^\/v1\/chat\/completions\?(.*&)?api-version=2024-10-21(&|$)/,
        "the chat path, with Kong's api-version",
      );
      const entry = await ledgerEntry(d, 'acme', res);
      t.is(entry.estimated, '0', `billed from the answer's usage (stream ${stream})`);
    }
    await ledgerEqualsUpstream(t, d, 'acme');
  });
  test.serial(
    'ai-proxy to a llama2 raw endpoint (no usage at all): estimated, its basis said, never under',
    async (t) => {
      const d = await startProviderDoor(closers, 'llama2-raw');
      const { res, upstream } = await ask(d, 'acme', {
        model: d.model,
        max_tokens: 6,
        messages: [question('raw')],
      });
      t.is(res.status, 200, res.text);
      t.is(upstream?.path, '/generate', 'the request reached the raw endpoint');
      const sent = upstream?.json as { inputs: string; parameters: { max_new_tokens: number } };
      t.true(sent.inputs.includes('[INST]'), "Kong's llama2 prompt format");
      t.is(sent.parameters.max_new_tokens, 6, "the meter's bound reaches it");
      const entry = await ledgerEntry(d, 'acme', res);
      t.is(entry.estimated, '1', 'no usage came back: estimated');
      t.is(entry.estimate_basis, 'prompt=tokenizer;completion=bound', 'and on what');
      t.is(Number(entry.completion), 6, 'the completion billed at the bound');
      t.true(Number(entry.prompt) > 0, "the tokenizer's prompt count");
      const generated = d.billed();
      t.true(generated.completion > 0 && generated.completion <= 6);
      t.true(Number(entry.completion) >= generated.completion, 'never below what it generated');
    },
  );
} else {
  test('the harness refuses a config naming ai-proxy rather than run the chain without it', async (t) => {
    const closers = new Closers();
    try {
      await t.throwsAsync(
        startKongYmlDoor(closers.add, undefined, [], [], {
          extraPlugins: [
            {
              name: 'ai-proxy',
              route: 'ai',
              config: { route_type: 'llm/v1/chat', model: { provider: 'openai' } },
            },
          ],
        }),
        { message: /ai-proxy/ },
      );
    } finally {
      await closers.closeAll();
    }
  });
}
