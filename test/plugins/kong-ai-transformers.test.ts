/**
 * The chain beside Kong's ai-request-transformer (issue 21 part 3; the recipe in
 * docs/operations.md, "Beside Kong's AI plugins"), on the real Kong 3.9.3 with kong.yml's chain.
 *
 * ai-request-transformer (priority 777) runs after token-meter (800) and retrieval-injector
 * (790): it sends the body as they left it to its own LLM and forwards that LLM's answer
 * instead. Here its LLM is a stub that rewrites the body as a careless or hostile transformation
 * would: the completion bound dropped or raised, more choices, a pricier model, the stream's
 * usage request gone. token-meter's transform guard (plugins/token-meter/transform-guard.lua, in
 * kong.yml's post-function access) gives the body token-meter's reservation again, so the
 * upstream receives the transformer's text with the meter's bound, choices, model and usage
 * request, and the ledger equals the upstream's usage to the token. A transformation that is not
 * a JSON object is refused 502 and reaches no upstream.
 *
 * Real Kong only: the harness runs none of Kong's AI plugins.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import {
  ask,
  exampleEntries,
  ledgerEntries,
  ledgerEntry,
  PROVIDER_KEY,
  startDoor,
  type EntryConfig,
} from '../helpers/ai-proxy-door';
import { Closers, gatewayKind } from '../helpers/frontdoor';
import { startKongYmlDoor } from '../helpers/kong-yml-door';

const MARK = `TRANSFORMED-${randomBytes(4).toString('hex')}`;

type Body = Record<string, unknown>;

/** The transformer's LLM: answers a chat completion whose content is `rewrite(body)`. */
async function startTransformerLlm(
  closers: Closers,
  rewrite: (body: Body) => string,
): Promise<{ url: string; seen: Body[] }> {
  const seen: Body[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const ask = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        messages: Array<{ role: string; content: string }>;
      };
      // ai_introspect_body: the prompt as the system message, the request body as the user's.
      const original = JSON.parse(ask.messages.at(-1)?.content ?? '{}') as Body;
      seen.push(original);
      const answer = JSON.stringify({
        id: 'chatcmpl-transformer',
        object: 'chat.completion',
        created: Math.floor(Date.now() / 1000),
        model: 'gpt-4o-mini',
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: rewrite(original) },
            finish_reason: 'stop',
          },
        ],
        usage: { prompt_tokens: 20, completion_tokens: 30, total_tokens: 50 },
      });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(answer);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.add(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

/** A careless transformation: its own text, and everything token-meter reserved for changed. */
function careless(body: Body): string {
  const messages = (body.messages as Array<Record<string, unknown>>).map((m) =>
    m.role === 'user' ? { ...m, content: `${String(m.content)} ${MARK}` } : m,
  );
  const out: Body = { ...body, messages, model: 'gpt-4o', n: 3, max_tokens: 100000 };
  delete out.max_completion_tokens;
  delete out.stream_options;
  return JSON.stringify(out);
}

if (gatewayKind() === 'kong') {
  const closers = new Closers();
  test.after.always(() => closers.closeAll());

  async function door(rewrite: (body: Body) => string) {
    const llm = await startTransformerLlm(closers, rewrite);
    const d = await startDoor(
      closers,
      // The example the docs show, its LLM pointed at the stub.
      exampleEntries('request-transformer.yml').map((e) => {
        const c = e.config as {
          llm: { auth: { header_value: string }; model: { options: Record<string, unknown> } };
        };
        c.llm.auth.header_value = `Bearer ${PROVIDER_KEY}`;
        c.llm.model.options.upstream_url = `${llm.url}/v1/chat/completions`;
        return e;
      }),
      (p) => {
        const c = p.config as EntryConfig;
        if (p.name === 'circuit-breaker') {
          c.upstreams = {};
          c.plans = {};
        }
      },
    );
    return { d, llm };
  }

  test.serial(
    "ai-request-transformer: its text reaches the upstream with token-meter's bound, choices, model and usage request",
    async (t) => {
      const { d, llm } = await door(careless);
      for (const stream of [false, true]) {
        const { res, upstream } = await ask(d, 'acme', {
          model: 'gpt-4o-mini',
          stream,
          max_tokens: 40,
          messages: [{ role: 'user', content: `Say hello (${String(stream)})` }],
        });
        t.is(res.status, 200, res.text);
        const reserved = llm.seen.at(-1) as Body;
        const sent = upstream?.json as Body & { messages: Array<{ content: string }> };
        // The positive control: the transformer ran, and what it got carried the meter's bound.
        t.true(
          sent.messages.some((m) => String(m.content).includes(MARK)),
          "the transformer's text reached the upstream",
        );
        t.is(typeof reserved.max_tokens, 'number', "the transformer got the meter's bound");
        t.is(sent.max_tokens, reserved.max_tokens, "the meter's bound, not the transformer's");
        t.is(sent.model, 'gpt-4o-mini', 'the model token-meter priced');
        t.true(sent.n === undefined || sent.n === 1, 'one choice, as reserved');
        t.is(sent.stream ?? false, stream);
        if (stream) {
          t.deepEqual(sent.stream_options, { include_usage: true }, "the stream's usage asked for");
          const entry = await ledgerEntry(d, 'acme', res);
          t.is(entry.estimated, '0', 'a stream billed from its usage');
        }
      }
      // The upstream's usage, line for line; and the transformer's own LLM call, 20 + 30 tokens
      // each time as its stub answered, billed to the tenant as a line of its own (`<id>-t`).
      const entries = await ledgerEntries(d, 'acme');
      const lines = entries.filter((e) => String(e.rid).endsWith('-t'));
      t.is(lines.length, 2, 'one transformer line per transformed request');
      for (const line of lines) {
        t.like(line, { prompt: '20', completion: '30', model: 'gpt-4o-mini', estimated: '0' });
        t.true(Number(line.cost_nusd) > 0, 'priced, never free');
        t.truthy(
          entries.find((e) => e.rid === String(line.rid).slice(0, -2)),
          'beside its request',
        );
      }
      const billed = d.door.upstream.usage().acme;
      const upstreamLines = entries.filter((e) => !String(e.rid).endsWith('-t'));
      const sum = (f: string) => upstreamLines.reduce((n, e) => n + Number(e[f] ?? 0), 0);
      t.is(sum('prompt'), billed?.prompt ?? -1, "ledger prompt tokens = the upstream's");
      t.is(
        sum('completion'),
        billed?.completion ?? -1,
        "ledger completion tokens = the upstream's",
      );
    },
  );

  test.serial(
    'ai-request-transformer: a transformation that is not a JSON object is refused 502, never sent',
    async (t) => {
      const { d } = await door(() => 'Sure! Here is the rewritten request.');
      const { res, upstream } = await ask(d, 'acme', {
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'Say hello' }],
      });
      t.is(res.status, 502, res.text);
      t.is((res.json as { error?: { code?: string } }).error?.code, 'transformed_request_invalid');
      t.is(upstream, undefined, 'nothing reached the upstream');
    },
  );
}

if (gatewayKind() !== 'kong') {
  test('the harness refuses a config naming ai-request-transformer rather than run the chain without it', async (t) => {
    const closers = new Closers();
    try {
      await t.throwsAsync(
        startKongYmlDoor(closers.add, undefined, [], [], {
          extraPlugins: [
            {
              name: 'ai-request-transformer',
              route: 'ai',
              config: {
                prompt: 'x',
                llm: { route_type: 'llm/v1/chat', model: { provider: 'openai' } },
              },
            },
          ],
        }),
        { message: /ai-request-transformer/ },
      );
    } finally {
      await closers.closeAll();
    }
  });
}
