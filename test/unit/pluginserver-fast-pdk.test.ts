/**
 * The two kong-pdk 0.6.0 costs lib/pluginserver/fast-pdk.ts takes off every RPC, and the
 * instance-id fix of harden.ts: each checked against kong-pdk's own code, so that what we run
 * instead says and does what kong-pdk would.
 */
import test from 'ava';
import { Decoder, Encoder } from '@msgpack/msgpack';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fastKong, pipeCall } from '../../lib/pluginserver/fast-pdk';
import '../../lib/pluginserver/harden';

/** Every method of the facade, as `namespace.path.method`. */
function methodsOf(
  o: object,
  prefix = 'kong',
): Array<{ path: string; fn: (...a: unknown[]) => unknown }> {
  const out: Array<{ path: string; fn: (...a: unknown[]) => unknown }> = [];
  for (const [k, v] of Object.entries(o)) {
    const p = `${prefix}.${k}`;
    if (typeof v === 'function') out.push({ path: p, fn: v as (...a: unknown[]) => unknown });
    else if (v && typeof v === 'object') out.push(...methodsOf(v as object, p));
  }
  return out;
}

test("the facade calls every PDK method by the name kong-pdk's own Proxy gives it", async (t) => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const PDK = require('kong-pdk/pdk.js') as new (pipe: unknown) => { kong: unknown };
  const sent = (): {
    put(v: unknown): void;
    get(): Promise<[unknown, unknown]>;
    last?: unknown;
  } => {
    const pipe = {
      last: undefined as unknown,
      put(v: unknown) {
        pipe.last = v;
      },
      get: async (): Promise<[unknown, unknown]> => ['ok', undefined],
    };
    return pipe;
  };
  const methods = methodsOf(fastKong(async (method, ...args) => ({ Method: method, Args: args })));
  t.true(methods.length >= 35, 'the whole KongPdk surface');
  for (const m of methods) {
    const ours = (await m.fn('a', 1)) as { Method: string };
    const pipe = sent();
    let node: unknown = new PDK(pipe).kong;
    for (const part of m.path.split('.').slice(1)) node = (node as Record<string, unknown>)[part];
    await (node as (...a: unknown[]) => Promise<unknown>)('a', 1);
    t.is(ours.Method, (pipe.last as { Method: string }).Method, m.path);
  }
});

type PdkServer = {
  StartInstance(cfg: { Name: string; Config: string }): Promise<{ Id: number }>;
  HandleEvent(e: {
    InstanceId: number;
    EventName: string;
  }): Promise<{ Data: unknown; EventId: number }>;
  Step(d: { EventId: number; Data: unknown }): Promise<{ Data: unknown }>;
  close(): void;
};

function serverWith(source: string): PdkServer {
  const dir = mkdtempSync(path.join(tmpdir(), 'kta-fastpdk-'));
  writeFileSync(path.join(dir, 'probe.js'), source);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Server = require('kong-pdk/server.js') as new (dir: string, logger: object) => PdkServer;
  const quiet = { debug() {}, info() {}, warn() {}, error() {} };
  return new Server(dir, quiet);
}

const PROBE = `class Plugin { async access(kong) { const v = await kong.request.getHeader('x'); await kong.response.setHeader('y', String(v)); } }
module.exports = { Plugin, Version: '1', Priority: 1, Schema: [] };
`;

test('a phase gets the facade: its calls and the answers Kong steps in go through as with kong-pdk', async (t) => {
  const server = serverWith(PROBE);
  t.teardown(() => server.close());
  const { Id } = await server.StartInstance({ Name: 'probe', Config: '{}' });
  const first = await server.HandleEvent({ InstanceId: Id, EventName: 'access' });
  t.deepEqual(first.Data, { Method: 'kong.request.get_header', Args: ['x'] });
  const second = await server.Step({ EventId: first.EventId, Data: 'v1' });
  t.deepEqual(second.Data, { Method: 'kong.response.set_header', Args: ['y', 'v1'] });
  const end = await server.Step({ EventId: first.EventId, Data: null });
  t.is(end.Data, 'ret');
});

test('instance ids of a respawned process never repeat those of the process before it', async (t) => {
  const a = serverWith(PROBE);
  const b = serverWith(PROBE);
  t.teardown(() => {
    a.close();
    b.close();
  });
  const idsA: number[] = [];
  const idsB: number[] = [];
  for (let i = 0; i < 3; i++) {
    idsA.push((await a.StartInstance({ Name: 'probe', Config: '{}' })).Id);
    idsB.push((await b.StartInstance({ Name: 'probe', Config: '{}' })).Id);
  }
  t.true((idsA[0] as number) >= 16, 'kong-pdk alone starts at 0 in every process');
  t.deepEqual(
    idsA.map((id) => id - (idsA[0] as number)),
    [0, 1, 2],
  );
  t.false(idsB.some((id) => idsA.includes(id)));
  t.true(idsA.every(Number.isSafeInteger));
  // An id of the dead process is unknown to the new one: Kong then starts the instance again.
  await t.throwsAsync(b.HandleEvent({ InstanceId: idsA[0] as number, EventName: 'access' }), {
    message: /^no plugin instance/,
  });
});

test('the listener answers split and whole messages, and builds no debug text per message', async (t) => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Listener = require('kong-pdk/listener.js') as new (
    ps: object,
    prefix: string,
  ) => { serve(): net.Server };
  const debugs: unknown[] = [];
  const logger = { debug: (...a: unknown[]) => debugs.push(a), info() {}, error() {} };
  const ps = {
    getLogger: () => logger,
    Echo: async (x: unknown) => ({ echoed: x }),
  };
  const sock = path.join(mkdtempSync(path.join(tmpdir(), 'kta-lsn-')), 's.sock');
  const server = new Listener(ps, sock).serve();
  t.teardown(() => server.close());
  await new Promise((r) => server.once('listening', r));
  const ask = (chunks: Uint8Array[]) =>
    new Promise<unknown>((resolve, reject) => {
      const c = net.connect(sock);
      let got = Buffer.alloc(0);
      c.on('data', (d: Buffer) => {
        got = Buffer.concat([got, d]);
        try {
          resolve(new Decoder().decode(got));
          c.end();
        } catch {
          // the reply is not whole yet
        }
      });
      c.once('error', reject);
      (async () => {
        for (const ch of chunks) {
          c.write(ch);
          await new Promise((r) => setTimeout(r, 20));
        }
      })().catch(reject);
    });
  const big = 'b'.repeat(100_000);
  const msg = new Encoder().encode([0, 9, 'plugin.Echo', [big]]);
  t.deepEqual(await ask([msg]), [1, 9, null, { echoed: big }]);
  t.deepEqual(await ask([msg.slice(0, 10), msg.slice(10)]), [1, 9, null, { echoed: big }]);
  const unknown = await ask([new Encoder().encode([0, 3, 'plugin.Nope', []])]);
  t.deepEqual(unknown, [1, 3, 'method Nope not implemented', null]);
  t.is(debugs.length, 0);
});

test("the event's pipe carries one call at a time: a call made while another waits goes after it", async (t) => {
  // A pipe as kong-pdk's: put sends a call, get waits for Kong's answer to the last one sent.
  const sent: string[] = [];
  const answers: Array<(v: [unknown, unknown]) => void> = [];
  const pipe = {
    put: (v: unknown) => void sent.push((v as { Method: string }).Method),
    get: () => new Promise<[unknown, unknown]>((r) => answers.push(r)),
  };
  const call = pipeCall(pipe);
  const a = call('kong.response.get_status');
  const b = call('kong.response.get_source');
  await new Promise((r) => setImmediate(r));
  t.deepEqual(sent, ['kong.response.get_status'], 'the second waits for the first answer');
  answers.shift()?.([200, undefined]);
  t.is(await a, 200);
  await new Promise((r) => setImmediate(r));
  t.deepEqual(sent, ['kong.response.get_status', 'kong.response.get_source']);
  answers.shift()?.(['service', undefined]);
  t.is(await b, 'service', 'each call gets its own answer');
  // An error answer fails its own call only; the next still goes.
  const c = call('kong.response.get_header', 'x');
  const d = call('kong.response.get_headers');
  await new Promise((r) => setImmediate(r));
  answers.shift()?.([null, 'boom']);
  await t.throwsAsync(c, { message: /boom/ });
  await new Promise((r) => setImmediate(r));
  answers.shift()?.([{ a: '1' }, undefined]);
  t.deepEqual(await d, { a: '1' });
});
