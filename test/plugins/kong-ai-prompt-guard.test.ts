/**
 * Kong's bundled ai-prompt-guard beside the chain, scoped to one tenant (issue 21 parts 3 and
 * 6; the recipe in docs/operations.md, "Per-tenant guardrails"): each tenant is a Kong consumer,
 * so a plugin entry with `consumer: <tenant>-app` guards that tenant only. Shown on the real
 * Kong, with what it leaves open that the plan's own guard (tenant-auth `guard`,
 * test/isolation/content-guard.test.ts) closes: a phrase in a system message passes it unless
 * `match_all_roles` is set, and content given as parts is refused outright.
 *
 * Real Kong only: the harness runs no bundled Lua plugin but the pre- and post-function
 * (docs/harness.md). On the harness the one test here checks that it says so: it refuses the
 * config naming the plugin, rather than run the chain without the guard.
 */
import { randomUUID } from 'node:crypto';
import test from 'ava';
import {
  Closers,
  declarative,
  gatewayKind,
  KEY_AUTH,
  planConsumers,
  send,
  startFrontDoor,
  type FrontDoor,
  type Sent,
} from '../helpers/frontdoor';

const PHRASE = 'ignore previous instructions';

const GUARD_ENTRY = {
  name: 'ai-prompt-guard',
  consumer: 'acme-app',
  config: { deny_patterns: ['ignore\\s+previous\\s+instructions'] },
};

if (gatewayKind() === 'kong') {
  const closers = new Closers();
  let door: FrontDoor;

  test.before(async () => {
    door = await startFrontDoor(closers.add, (u) => {
      const config = declarative(
        u,
        [
          KEY_AUTH,
          {
            name: 'tenant-auth',
            route: 'ai',
            config: { plans: { std: { tools_allowed: ['*'] } } },
          },
          // acme's own guard, as the bundled plugin: Kong looks plugins up per consumer.
          GUARD_ENTRY,
          {
            name: 'ai-prompt-guard',
            consumer: 'strict-app',
            config: {
              deny_patterns: ['ignore\\s+previous\\s+instructions'],
              match_all_roles: true,
            },
          },
        ],
        planConsumers([
          ['acme', 'std'],
          ['strict', 'std'],
          ['globex', 'std'],
        ] as const),
      );
      return config;
    });
  });

  test.after.always(() => closers.closeAll());

  const call = async (tenant: string, body: object): Promise<{ res: Sent; sent: boolean }> => {
    const id = randomUUID();
    const res = await send(`${door.url}/v1/chat/completions`, {
      headers: { apikey: `${tenant}-key`, 'x-test-id': id },
      body,
    });
    return { res, sent: door.upstream.received.some((r) => r.headers['x-test-id'] === id) };
  };
  const chat = (...messages: object[]) => ({ model: 'gpt-4o-mini', messages });

  test('scoped to a consumer: it guards that tenant only', async (t) => {
    const bad = chat({ role: 'user', content: PHRASE });
    const acme = await call('acme', bad);
    t.is(acme.res.status, 400, acme.res.text);
    t.false(acme.sent, 'refused before the upstream');
    const globex = await call('globex', bad);
    t.is(globex.res.status, 200, 'another tenant has no such guard');
    t.true(globex.sent);
    t.is((await call('acme', chat({ role: 'user', content: 'hello' }))).res.status, 200);
  });

  test('what it leaves open: the system role passes unless match_all_roles; content parts are refused outright', async (t) => {
    const inSystem = chat({ role: 'system', content: PHRASE }, { role: 'user', content: 'hi' });
    const acme = await call('acme', inSystem);
    t.is(acme.res.status, 200, 'the default guard reads the user role only');
    t.true(acme.sent);
    const strict = await call('strict', inSystem);
    t.is(strict.res.status, 400, 'match_all_roles reads every role');
    t.false(strict.sent);
    const parts = chat({ role: 'user', content: [{ type: 'text', text: 'hello' }] });
    const p = await call('acme', parts);
    t.is(p.res.status, 400, `a harmless request with content parts: ${p.res.text}`);
    t.false(p.sent);
  });
} else {
  test('the harness refuses a config with ai-prompt-guard, naming it (it cannot run it)', async (t) => {
    const closers = new Closers();
    t.teardown(() => closers.closeAll());
    const e = await t.throwsAsync(
      startFrontDoor(closers.add, (u) =>
        declarative(u, [KEY_AUTH, GUARD_ENTRY], planConsumers([['acme', 'std']] as const)),
      ),
    );
    t.regex(e?.message ?? '', /ai-prompt-guard/);
  });
}
