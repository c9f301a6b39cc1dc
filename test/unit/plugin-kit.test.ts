/**
 * The plugin kit (lib/plugin/define.ts): a plugin declares its start-up and phases; the kit
 * refuses every request of a misconfigured instance with the one plugin_misconfigured 500,
 * answers an access error with its refusal (never proxied), only logs a log-phase error, and
 * shows Kong only the phases the plugin declares.
 */
import test from 'ava';
import { GatewayError } from '../../lib/http/errors';
import { definePlugin, misconfigured, startUpOf } from '../../lib/plugin/define';

interface Exit {
  status: number;
  body: { error: { code: string; message: string } };
}

/** Just what the kit and guardPhase call. */
function fakeKong() {
  const exits: Exit[] = [];
  const errors: string[] = [];
  const kong = {
    response: {
      exit: async (status: number, body: string) => {
        exits.push({ status, body: JSON.parse(body) as Exit['body'] });
      },
    },
    log: { err: async (m: string) => void errors.push(m) },
    nginx: { getVar: async () => '0123456789abcdef0123456789abcdef' },
  };
  return { kong, exits, errors };
}

const TEAPOT = new GatewayError({
  status: 418,
  type: 'invalid_request_error',
  code: 'teapot',
  message: 'no',
});

function define(opts: { failStartUp?: boolean; withLog?: boolean }) {
  const seen: string[] = [];
  const refusals: Array<[string, string]> = [];
  const mod = definePlugin<{ n: number }, { label: string }>({
    name: 'kit-probe',
    version: '9.9.9',
    priority: 1234,
    schema: { fields: [] },
    startUp: (raw) =>
      startUpOf(() => {
        if (opts.failStartUp) throw new Error('field x: out of range');
        return { n: (raw as { n: number }).n };
      }),
    metricsAt: () => ({ port: 0, host: '127.0.0.1' }),
    note: () => ({ label: 'none' }),
    async access(ready, _kong, note) {
      seen.push(`access ${ready.n}`);
      note.label = `tenant-${ready.n}`;
      if (ready.n === 418) throw TEAPOT;
      if (ready.n === 500) throw new Error('boom');
    },
    onRefusal: (e, note) => void refusals.push([e.code, note.label]),
    ...(opts.withLog
      ? {
          async log(ready: { n: number }) {
            seen.push(`log ${ready.n}`);
            if (ready.n === 500) throw new Error('log boom');
          },
        }
      : {}),
  });
  return { mod, seen, refusals };
}

test('the module Kong loads: name, version, priority, schema, and only the declared phases', (t) => {
  const { mod } = define({});
  t.like(mod, { Name: 'kit-probe', Version: '9.9.9', Priority: 1234 });
  t.deepEqual(mod.Schema, { fields: [] });
  const proto = mod.Plugin.prototype as unknown as Record<string, unknown>;
  t.is(typeof proto.access, 'function');
  t.false('log' in proto, 'no log phase declared: Kong must not start one');
  const withLog = define({ withLog: true }).mod.Plugin.prototype as unknown as Record<
    string,
    unknown
  >;
  t.is(typeof withLog.log, 'function');
});

test('a start-up that throws is kept: every request refused 500 plugin_misconfigured, logged, phase not run', async (t) => {
  const { mod, seen } = define({ failStartUp: true, withLog: true });
  const plugin = new mod.Plugin({ n: 1 }) as unknown as {
    access(k: unknown): Promise<void>;
    log(k: unknown): Promise<void>;
    startUp: { ok: boolean };
  };
  t.false(plugin.startUp.ok);
  const { kong, exits, errors } = fakeKong();
  await plugin.access(kong);
  await plugin.log(kong);
  t.deepEqual(seen, [], 'neither phase ran');
  t.is(exits.length, 1);
  t.is(exits[0]?.status, 500);
  t.like(exits[0]?.body.error, {
    code: 'plugin_misconfigured',
    message: misconfigured('kit-probe').spec.message,
  });
  t.true(
    errors.some((e) => e.includes('field x: out of range')),
    'the reason is logged',
  );
});

test('access: a refusal is answered with its status and counted with the note; other errors are a 500', async (t) => {
  const { mod, refusals } = define({});
  const { kong, exits } = fakeKong();
  await (new mod.Plugin({ n: 418 }) as unknown as { access(k: unknown): Promise<void> }).access(
    kong,
  );
  await (new mod.Plugin({ n: 500 }) as unknown as { access(k: unknown): Promise<void> }).access(
    kong,
  );
  await (new mod.Plugin({ n: 7 }) as unknown as { access(k: unknown): Promise<void> }).access(kong);
  t.deepEqual(
    exits.map((e) => [e.status, e.body.error.code]),
    [
      [418, 'teapot'],
      [500, 'plugin_error'],
    ],
  );
  t.deepEqual(refusals, [
    ['teapot', 'tenant-418'],
    ['plugin_error', 'tenant-500'],
  ]);
});

test('log: an error is logged, never answered (the response has gone)', async (t) => {
  const { mod, seen } = define({ withLog: true });
  const { kong, exits, errors } = fakeKong();
  await (new mod.Plugin({ n: 500 }) as unknown as { log(k: unknown): Promise<void> }).log(kong);
  t.deepEqual(seen, ['log 500']);
  t.deepEqual(exits, []);
  t.true(errors.some((e) => e.includes('log boom')));
});

test('tenant-cache on the kit: a config it cannot use bypasses the cache, never the kit refusal', async (t) => {
  const cache = await import('../../plugins/tenant-cache/index');
  const p = new cache.Plugin({ master_key_env: 'KTA_NO_SUCH_SECRET_ENV' });
  t.true(p.startUp.ok, 'the kit sees a start-up that succeeded: no plugin_misconfigured');
  const state = p.startUp.ok ? p.startUp.ready : undefined;
  t.is(state?.ok, false, 'the cache itself is off');
  t.regex(state && !state.ok ? state.reason : '', /secret|KTA_NO_SUCH_SECRET_ENV/i);
  t.is(typeof (cache.Plugin.prototype as { access?: unknown }).access, 'function');
  t.is(typeof (cache.Plugin.prototype as { log?: unknown }).log, 'function');
});
