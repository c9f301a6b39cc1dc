/**
 * The chain's one log phase (lib/request/chain-log.ts, lib/pluginserver/chain-entry.ts): the
 * co-hosted process serves tenant-ratelimit, tenant-cache and circuit-breaker without a log
 * phase (kong-pdk lists only prototype functions) and tenant-auth with one; the log work a
 * plugin left in a request's scope runs in tenant-auth's log, started in order and side by side
 * (one entry's Redis wait does not hold the next), once — and not again
 * when the plugin's own log phase runs too (a kong.conf that still dumps its own directory).
 * End to end on both gateways: every test of the chain (kong.yml's route runs the chain layout).
 */
import test from 'ava';
import { chainEntry, LOG_IN_CHAIN } from '../../lib/pluginserver/chain-entry';
import type { KongPdk } from '../../lib/pdk/kong';
import { runChainLog } from '../../lib/request/chain-log';
import { leaveForLog, takeForLog, type LogRecordSpec } from '../../lib/request/for-log';
import { openScope, slot } from '../../lib/request/scope';
import {
  encodeTenantContext,
  createTenantContext,
  TENANT_CONTEXT_KEY,
} from '../../lib/tenant/context';

class Base {
  constructor(readonly config: unknown) {}
  async access(): Promise<void> {}
  async log(): Promise<void> {}
}

const phases = (cls: { prototype: object }) =>
  ['access', 'log'].filter(
    (p) => typeof (cls.prototype as Record<string, unknown>)[p] === 'function',
  );

test('chain entries: no log phase for the three, one for tenant-auth, the others as they are', (t) => {
  for (const name of LOG_IN_CHAIN) {
    const m = chainEntry({ Name: name, Plugin: Base, Priority: 1 });
    t.deepEqual(phases(m.Plugin), ['access'], name);
    t.true(new m.Plugin({ a: 1 }) instanceof Base, 'the same plugin otherwise');
  }
  t.deepEqual(
    phases(
      chainEntry({
        Name: 'tenant-auth',
        Plugin: class {
          async access() {}
        },
      }).Plugin,
    ),
    ['access', 'log'],
  );
  const meter = { Name: 'token-meter', Plugin: Base };
  t.is(chainEntry(meter), meter);
});

/** A kong whose ctx.shared holds one request's carrier; records the log lines. */
function fakeKong(carrier: string | null): KongPdk & { lines: string[] } {
  const lines: string[] = [];
  const kong = {
    lines,
    ctx: {
      shared: {
        get: async (k: string) => (k === TENANT_CONTEXT_KEY ? carrier : null),
        set: async () => undefined,
      },
    },
    log: { err: async (...a: unknown[]) => void lines.push(a.join(' ')) },
  };
  return kong as unknown as KongPdk & { lines: string[] };
}

interface Rec {
  n: number;
}
const spec = (plugin: string, order: number): LogRecordSpec<Rec> => ({
  plugin,
  order,
  slot: slot<Rec>(`${plugin}_rec`),
  sharedKey: `${plugin}_rec`,
  encode: (r) => JSON.stringify(r),
  decode: () => undefined,
});

function request() {
  const scope = openScope();
  const tenant = createTenantContext({
    tenantId: 'acme',
    plan: 'pro',
    source: 'consumer',
    subject: 'acme-consumer',
    policy: {
      toolsAllowed: ['*'],
      preferredModel: null,
      fallbackModel: null,
      persona: null,
      knowledgeNamespace: 'acme',
      weight: 1,
    },
  });
  const carrier = encodeTenantContext(tenant, scope.key);
  scope.bindCarrier(carrier, tenant);
  return { scope, carrier };
}

test.serial(
  'the work left in access runs once in the chain log, in order; an error does not stop the rest',
  async (t) => {
    const { declareChainProcess } = await import('../../lib/request/scope-store');
    declareChainProcess();
    const { scope, carrier } = request();
    const ran: string[] = [];
    const kong = fakeKong(carrier);
    await leaveForLog(kong, scope, spec('tenant-cache', 2), { n: 1 }, async (_k, r) => {
      ran.push(`cache ${r.n}`);
    });
    await leaveForLog(kong, scope, spec('tenant-ratelimit', 0), { n: 1 }, async (_k, r) => {
      ran.push(`ratelimit ${r.n}`);
    });
    // A second record of the same plugin replaces the first: its work runs once, with the last.
    await leaveForLog(kong, scope, spec('tenant-ratelimit', 0), { n: 2 }, async (_k, r) => {
      ran.push(`ratelimit again ${r.n}`);
    });
    scope.defer({
      plugin: 'circuit-breaker',
      order: 1,
      run: async () => {
        ran.push('breaker');
        throw new Error('boom');
      },
    });
    await runChainLog(kong);
    t.deepEqual(ran, ['ratelimit 2', 'breaker', 'cache 1']);
    t.regex(kong.lines.join('\n'), /circuit-breaker log \(in the chain's log phase\): Error: boom/);
    await runChainLog(kong);
    t.is(ran.length, 3, 'nothing runs twice');
  },
);

test.serial(
  "the entries run side by side: one waiting on Redis does not hold up the next plugin's work",
  async (t) => {
    const { scope, carrier } = request();
    const kong = fakeKong(carrier);
    const started: string[] = [];
    let answer!: () => void;
    // The seat's release waits for an answer that comes only once the store has started:
    // one after the other, the phase would never end.
    const redis = new Promise<void>((r) => {
      answer = r;
    });
    await leaveForLog(kong, scope, spec('tenant-ratelimit', 0), { n: 1 }, async () => {
      started.push('release');
      await redis;
      started.push('released');
    });
    await leaveForLog(kong, scope, spec('tenant-cache', 2), { n: 1 }, async () => {
      started.push('store');
      answer();
    });
    const done = await Promise.race([
      runChainLog(kong).then(() => 'done'),
      new Promise((r) => setTimeout(() => r('stuck'), 2000)),
    ]);
    t.is(done, 'done');
    t.deepEqual(started, ['release', 'store', 'released'], 'started in order, in flight together');
  },
);

test.serial(
  "a plugin's own log phase takes its record first: the chain log then skips it",
  async (t) => {
    const { scope, carrier } = request();
    const kong = fakeKong(carrier);
    const ran: string[] = [];
    const s = spec('tenant-ratelimit', 0);
    await leaveForLog(kong, scope, s, { n: 7 }, async () => {
      ran.push('chain');
    });
    const taken = await takeForLog(kong, s);
    t.deepEqual(taken.record, { n: 7 });
    taken.done();
    await runChainLog(kong);
    t.deepEqual(ran, [], 'the chain log found nothing left');
  },
);

test.serial(
  'a request refused before tenant-auth published anything: the chain log does nothing',
  async (t) => {
    const kong = fakeKong(null);
    await t.notThrowsAsync(runChainLog(kong));
    t.deepEqual(kong.lines, []);
  },
);
