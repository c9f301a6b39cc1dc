/**
 * The batched PDK call (lib/pluginserver/batch.ts) against a fake Kong that records every
 * exchange: reads learnt from earlier events are fetched in one exchange and answered from it
 * until the phase writes; writes are queued and sent in order, with the next read that goes to
 * Kong, with the exit, or at the phase's end; without the snippet (Kong answers nil) the same
 * calls go one by one and the instance is not tried again for a while; an exit rides in a
 * batch only once a batch of the phase came back.
 */
import test from 'ava';
import {
  ABSENT_RETRY_MS,
  BATCH_METHOD,
  PhaseBatch,
  endsWithExit,
  resetBatchMemory,
} from '../../lib/pluginserver/batch';

type Wire = [string, unknown[], number, boolean?];

/** A Kong with state: headers, a body, ctx.shared; `snippet` says whether kta_pdk is there. */
function fakeKong(snippet: boolean) {
  const exchanges: string[] = [];
  const state = { shared: new Map<string, unknown>(), upstreamBody: '', exited: 0 };
  const one = (method: string, args: unknown[]): unknown => {
    switch (method) {
      case 'kong.request.get_headers':
        return { host: 'h', 'x-n': String(state.shared.size) };
      case 'kong.request.get_raw_body':
        return Buffer.from('{"a":1}');
      case 'kong.ctx.shared.get':
        return state.shared.get(String(args[0])) ?? null;
      case 'kong.ctx.shared.set':
        state.shared.set(String(args[0]), args[1]);
        return null;
      case 'kong.service.request.set_raw_body':
        state.upstreamBody = String(args[0]);
        return null;
      case 'kong.service.response.get_raw_body':
        if (!state.upstreamBody) throw new Error('no upstream body');
        return Buffer.from(state.upstreamBody);
      case 'kong.response.exit':
        state.exited++;
        return null;
      default:
        return null;
    }
  };
  const call = async (method: string, ...args: unknown[]): Promise<unknown> => {
    if (method === BATCH_METHOD) {
      const calls = args[0] as Wire[];
      exchanges.push(`batch[${calls.map((c) => c[0].replace('kong.', '')).join(',')}]`);
      if (!snippet) return null;
      return calls.map(([m, a, n, ahead]) => {
        let v: unknown;
        try {
          v = one(m, a.slice(0, n));
        } catch (e) {
          if (ahead !== true) throw e;
          return { e: (e as Error).message };
        }
        if (v === null || v === undefined) return {};
        if (Buffer.isBuffer(v)) return { b: v.toString('base64') };
        return { v: typeof v === 'object' ? { ...(v as object) } : v };
      });
    }
    exchanges.push(method.replace('kong.', ''));
    const v = one(method, args);
    // mp_rpc.lua fix_mmap: alone, a header map's string values travel as arrays.
    if (method === 'kong.request.get_headers') {
      return Object.fromEntries(Object.entries(v as object).map(([h, x]) => [h, [x]]));
    }
    return v;
  };
  return { call, exchanges, state };
}

/** One phase: two reads, two writes — what tenant-auth's access does. */
async function authLike(call: (m: string, ...a: unknown[]) => Promise<unknown>) {
  const headers = (await call('kong.request.get_headers', 100)) as Record<string, unknown>;
  const body = (await call('kong.request.get_raw_body', 0)) as Buffer;
  await call('kong.ctx.shared.set', 'tenant', 'acme');
  await call('kong.service.request.set_raw_body', '{"a":2}');
  return { headers, body };
}

test.beforeEach(() => resetBatchMemory());
test.serial(
  'first event learns; later events fetch the reads in one exchange and send the writes in one',
  async (t) => {
    const k = fakeKong(true);
    for (let i = 0; i < 3; i++) {
      const b = new PhaseBatch(k.call, 'auth#1', 'auth.access');
      const r = await authLike(b.handle);
      await b.end();
      t.deepEqual(
        r.headers['x-n'],
        ['0'],
        'a multimap as Kong sends it alone (string values as arrays)',
      );
      t.true(Buffer.isBuffer(r.body) && r.body.toString() === '{"a":1}', 'the raw body as bytes');
      k.state.shared.clear();
    }
    t.deepEqual(k.exchanges, [
      // first event: nothing learnt, the snippet not yet seen on the route: one by one
      'request.get_headers',
      'request.get_raw_body',
      'ctx.shared.set',
      'service.request.set_raw_body',
      // the reads learnt probe for the snippet; from then on the writes go together too
      'batch[request.get_headers,request.get_raw_body]',
      'batch[ctx.shared.set,service.request.set_raw_body]',
      'batch[request.get_headers,request.get_raw_body]',
      'batch[ctx.shared.set,service.request.set_raw_body]',
    ]);
    t.is(k.state.upstreamBody, '{"a":2}');
  },
);

test.serial(
  'a read after a write goes to Kong with the queued writes first (it sees them)',
  async (t) => {
    const k = fakeKong(true);
    // The snippet seen on this route by an earlier phase (its reads probed for it).
    const warm = new PhaseBatch(k.call, 'p#1', 'p.access');
    await warm.handle('kong.request.get_headers', 100);
    await warm.handle('kong.ctx.shared.get', 'x');
    await warm.end();
    const probe = new PhaseBatch(k.call, 'p#1', 'p.access');
    await probe.handle('kong.request.get_headers', 100);
    await probe.end();
    k.exchanges.length = 0;
    const b = new PhaseBatch(k.call, 'p#1', 'p.other');
    await b.handle('kong.ctx.shared.set', 'k', 'v');
    t.deepEqual(k.exchanges, [], 'a write alone is queued');
    const h = (await b.handle('kong.request.get_headers', 100)) as Record<string, unknown>;
    t.deepEqual(h['x-n'], ['1'], 'the read saw the write');
    t.deepEqual(k.exchanges, ['batch[ctx.shared.set,request.get_headers]']);
    await b.end();
    t.is(k.exchanges.length, 1, 'nothing left to send');
  },
);

test.serial(
  'a kong.ctx.shared value the phase set, sent or not, is answered without an exchange',
  async (t) => {
    const k = fakeKong(true);
    const b = new PhaseBatch(k.call, 'p#1', 'p.access');
    await b.handle('kong.ctx.shared.set', 'k', 'v1');
    await b.handle('kong.ctx.shared.set', 'k', 'v2');
    await b.handle('kong.ctx.shared.set', 't', { a: 1 });
    t.is(await b.handle('kong.ctx.shared.get', 'k'), 'v2', 'the last value set');
    t.deepEqual(k.exchanges, [], 'no exchange for it');
    // A table set comes back from Kong as Kong's copy: asked of Kong, with the writes first.
    t.deepEqual(await b.handle('kong.ctx.shared.get', 't'), { a: 1 });
    t.is(
      k.exchanges.length,
      3,
      'the writes and the read, one by one before the snippet is seen; k sent once, its last value',
    );
    t.is(k.state.shared.get('k'), 'v2', 'the writes reached Kong in order');
    await b.end();
  },
);

test.serial(
  'a read no write can change (route, consumer, request id) is answered from the first fetch after writes too',
  async (t) => {
    const k = fakeKong(true);
    const phase = async () => {
      const b = new PhaseBatch(k.call, 'p#1', 'p.access');
      await b.handle('kong.request.get_headers', 100);
      await b.handle('kong.ctx.shared.set', 'k', 'v');
      await b.handle('kong.router.get_route');
      await b.handle('kong.nginx.get_var', 'kong_request_id');
      // A flushed set: still answered from what the phase set.
      await b.handle('kong.request.get_raw_body', 0);
      t.is(await b.handle('kong.ctx.shared.get', 'k'), 'v');
      await b.end();
    };
    await phase(); // learns, one by one
    await phase(); // probes for the snippet
    k.exchanges.length = 0;
    await phase();
    t.deepEqual(k.exchanges, [
      'batch[request.get_headers,router.get_route,nginx.get_var]',
      // get_raw_body is not stable: after the write it goes to Kong, with the write first
      'batch[ctx.shared.set,request.get_raw_body]',
    ]);
  },
);

test.serial(
  'the chain merge rides the phase first batch only where the snippet is known, and is never learnt',
  async (t) => {
    const k = fakeKong(true);
    const CHAIN = 'kong.ctx.shared.kta_pdk.chain';
    // Unknown route: not sent at all (a Kong without the snippet would not know the method).
    const first = new PhaseBatch(k.call, 'auth#1', 'auth.access');
    t.is(await first.handle(CHAIN, 'tenant-auth', ['x']), null);
    await first.handle('kong.request.get_headers', 100);
    await first.handle('kong.request.get_raw_body', 0);
    await first.end();
    t.deepEqual(k.exchanges, ['request.get_headers', 'request.get_raw_body']);
    // The reads learnt reveal the snippet on the route.
    const probe = new PhaseBatch(k.call, 'auth#1', 'auth.access');
    await probe.handle('kong.request.get_headers', 100);
    await probe.end();
    k.exchanges.length = 0;
    const b = new PhaseBatch(k.call, 'auth#1', 'auth.access');
    await b.handle(CHAIN, 'tenant-auth', ['x']);
    await b.handle('kong.request.get_headers', 100);
    await b.handle('kong.request.get_raw_body', 0);
    await b.end();
    t.deepEqual(
      k.exchanges,
      ['batch[ctx.shared.kta_pdk.chain,request.get_headers,request.get_raw_body]'],
      'with the learnt reads, in one exchange; the read then answered from it',
    );
    // Not as a later call of the phase, and never fetched ahead by a phase that did not ask.
    k.exchanges.length = 0;
    const later = new PhaseBatch(k.call, 'auth#1', 'auth.access');
    await later.handle('kong.request.get_headers', 100);
    t.is(await later.handle(CHAIN, 'tenant-auth', ['x']), null, 'only as the first call');
    await later.end();
    t.deepEqual(k.exchanges, ['batch[request.get_headers,request.get_raw_body]']);
  },
);

test.serial(
  'the first read answers its repeats in the phase, with or without learnt reads',
  async (t) => {
    const k = fakeKong(true);
    k.state.shared.set('carrier', 'c1');
    const cold = new PhaseBatch(k.call, 'log#1', 'log.log', Date.now, 'log');
    t.is(await cold.handle('kong.ctx.shared.get', 'carrier'), 'c1');
    t.is(await cold.handle('kong.ctx.shared.get', 'carrier'), 'c1');
    t.deepEqual(k.exchanges, ['ctx.shared.get'], 'the repeat cost no exchange');
    await cold.handle('kong.ctx.shared.get', 'usage');
    await cold.end();
    k.exchanges.length = 0;
    const warm = new PhaseBatch(k.call, 'log#1', 'log.log', Date.now, 'log');
    t.is(await warm.handle('kong.ctx.shared.get', 'carrier'), 'c1');
    await warm.handle('kong.ctx.shared.get', 'usage');
    t.is(await warm.handle('kong.ctx.shared.get', 'carrier'), 'c1');
    t.deepEqual(k.exchanges, ['batch[ctx.shared.get,ctx.shared.get]']);
  },
);

test.serial('learnt reads are not served once the phase has written', async (t) => {
  const k = fakeKong(true);
  const first = new PhaseBatch(k.call, 'p#1', 'p.access');
  await first.handle('kong.request.get_headers', 100);
  await first.handle('kong.ctx.shared.get', 'x');
  await first.end();
  k.exchanges.length = 0;
  const b = new PhaseBatch(k.call, 'p#1', 'p.access');
  await b.handle('kong.request.get_headers', 100);
  await b.handle('kong.ctx.shared.set', 'x', 'new');
  t.is(await b.handle('kong.ctx.shared.get', 'x'), 'new', 'not the value fetched before the write');
  // The value the phase set answers it (not sent yet: no exchange); it goes at the phase's end.
  t.deepEqual(k.exchanges, ['batch[request.get_headers,ctx.shared.get]']);
  await b.end();
  t.is(k.state.shared.get('x'), 'new');
});

test.serial(
  'without the snippet: the same calls one by one, and no batch again for a while',
  async (t) => {
    const k = fakeKong(false);
    let now = 1_000;
    const mk = () => new PhaseBatch(k.call, 'auth#7', 'auth.access', () => now);
    for (let i = 0; i < 2; i++) {
      const b = mk();
      await authLike(b.handle);
      await b.end();
    }
    t.is(k.state.upstreamBody, '{"a":2}', 'no write lost');
    t.is(k.state.shared.get('tenant'), 'acme');
    t.deepEqual(k.exchanges, [
      'request.get_headers',
      'request.get_raw_body',
      'ctx.shared.set',
      'service.request.set_raw_body',
      // the learnt reads probe once: Kong runs nothing and answers nil; they go alone
      'batch[request.get_headers,request.get_raw_body]',
      'request.get_headers',
      'request.get_raw_body',
      'ctx.shared.set',
      'service.request.set_raw_body',
    ]);
    k.exchanges.length = 0;
    now += ABSENT_RETRY_MS;
    const b = mk();
    await authLike(b.handle);
    await b.end();
    t.is(k.exchanges[0], 'batch[request.get_headers,request.get_raw_body]', 'tried again later');
  },
);

test.serial(
  'an exit rides with the queued writes only after a batch of the phase came back',
  async (t) => {
    const k = fakeKong(true);
    // No batch yet in this phase: the writes go (and are answered) before the exit goes alone.
    const a = new PhaseBatch(k.call, 'c#1', 'c.access');
    await a.handle('kong.ctx.shared.set', 'status', 'hit');
    void a.handle('kong.response.exit', 200, 'cached', {});
    await a.end();
    t.deepEqual(k.exchanges, ['ctx.shared.set', 'response.exit']);
    t.is(k.state.exited, 1);
    k.exchanges.length = 0;
    // Learnt read → the phase's first exchange is a batch that came back: the exit rides along.
    const warm = new PhaseBatch(k.call, 'c#1', 'c.access');
    await warm.handle('kong.ctx.shared.get', 'tenant');
    await warm.handle('kong.request.get_headers', 100);
    await warm.end();
    const b = new PhaseBatch(k.call, 'c#1', 'c.access');
    await b.handle('kong.ctx.shared.get', 'tenant');
    await b.handle('kong.request.get_headers', 100);
    await b.handle('kong.ctx.shared.set', 'status', 'hit');
    void b.handle('kong.response.exit', 200, 'cached', {});
    t.is(
      await b.handle('kong.ctx.shared.set', 'after', 'exit'),
      undefined,
      'nothing after an exit',
    );
    await b.end();
    t.deepEqual(k.exchanges.slice(-2), [
      'batch[ctx.shared.get,request.get_headers]',
      'batch[ctx.shared.set,response.exit]',
    ]);
    t.false(k.state.shared.has('after'));
  },
);

test('endsWithExit: the exit, and a batch whose last call is one', (t) => {
  t.true(endsWithExit('kong.response.exit', [200]));
  t.true(
    endsWithExit(BATCH_METHOD, [
      [
        ['kong.ctx.shared.set', ['a', 'b'], 2],
        ['kong.response.exit', [403], 1],
      ],
    ]),
  );
  t.false(
    endsWithExit(BATCH_METHOD, [
      [
        ['kong.response.exit', [403], 1],
        ['kong.ctx.shared.set', ['a', 'b'], 2],
      ],
    ]),
  );
  t.false(endsWithExit('kong.ctx.shared.set', ['a', 'b']));
});

test.serial(
  'a read fetched ahead that fails this time is not answered from the batch',
  async (t) => {
    const k = fakeKong(true);
    k.state.upstreamBody = 'answer';
    const first = new PhaseBatch(k.call, 'c#2', 'c.log', Date.now, 'log');
    await first.handle('kong.ctx.shared.get', 'pending');
    t.is(String(await first.handle('kong.service.response.get_raw_body')), 'answer');
    await first.end();
    // A cache hit: no upstream body; the plugin does not ask for it, and nothing fails.
    k.state.upstreamBody = '';
    k.exchanges.length = 0;
    const hit = new PhaseBatch(k.call, 'c#2', 'c.log', Date.now, 'log');
    t.is(await hit.handle('kong.ctx.shared.get', 'pending'), null);
    await hit.end();
    t.deepEqual(k.exchanges, ['batch[ctx.shared.get,service.response.get_raw_body]']);
    // Asked anyway: made alone, and its error is the caller's, as without batching.
    const again = new PhaseBatch(k.call, 'c#2', 'c.log', Date.now, 'log');
    await again.handle('kong.ctx.shared.get', 'pending');
    await t.throwsAsync(again.handle('kong.service.response.get_raw_body'), {
      message: 'no upstream body',
    });
  },
);

test.serial(
  'a value written at the phase end is computed then, sent once, with the end or the exit',
  async (t) => {
    const k = fakeKong(true);
    for (let i = 0; i < 2; i++) {
      // Learnt, then fetched in a batch that came back: the snippet is known on the route.
      const warm = new PhaseBatch(k.call, 'e#1', 'e.access');
      await warm.handle('kong.ctx.shared.get', 'tenant');
      await warm.handle('kong.request.get_headers', 100);
      await warm.end();
    }
    k.exchanges.length = 0;
    // At the end: the last value, in the same exchange as the other writes.
    let v = 'first';
    const a = new PhaseBatch(k.call, 'e#1', 'e.access');
    a.sharedAtEnd('times', () => v);
    await a.handle('kong.ctx.shared.get', 'tenant');
    await a.handle('kong.request.get_headers', 100);
    await a.handle('kong.ctx.shared.set', 'other', 'x');
    v = 'last';
    await a.end();
    t.is(k.state.shared.get('times'), 'last', 'computed when the writes leave');
    t.deepEqual(k.exchanges, [
      'batch[ctx.shared.get,request.get_headers]',
      'batch[ctx.shared.set,ctx.shared.set]',
    ]);
    // At an exit: computed as the exit is made, sent with it; nothing more at the end.
    k.exchanges.length = 0;
    const b = new PhaseBatch(k.call, 'e#1', 'e.access');
    b.sharedAtEnd('times', () => v);
    await b.handle('kong.ctx.shared.get', 'tenant');
    await b.handle('kong.request.get_headers', 100);
    v = 'at exit';
    void b.handle('kong.response.exit', 200, 'cached', {});
    v = 'after';
    await b.end();
    t.is(k.state.shared.get('times'), 'at exit');
    t.deepEqual(k.exchanges, [
      'batch[ctx.shared.get,request.get_headers]',
      'batch[ctx.shared.set,response.exit]',
    ]);
  },
);
