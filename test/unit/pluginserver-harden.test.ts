import test from 'ava';
import { Decoder, Encoder } from '@msgpack/msgpack';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  hardenPluginServer,
  logLine,
  pendingPluginServerEvents,
  renameProtoKeys,
} from '../../lib/pluginserver/harden';

/** What Kong's lua-MessagePack sends for a header table with a `__proto__` key. */
function packedHeaders(): Uint8Array {
  const headers = Object.create(null) as Record<string, string[]>;
  headers['__proto__'] = ['1'];
  headers['x-tenant-id'] = ['acme'];
  return new Encoder().encode([1, 7, null, { EventId: 3, Data: headers }]);
}

test('a __proto__ key is renamed to a name no header can have, bytes otherwise untouched', (t) => {
  const input = packedHeaders();
  const out = renameProtoKeys(input);
  t.is(out.length, input.length);
  t.true(out.includes(Buffer.from('\0_proto__', 'latin1')));
  t.false(out.includes(Buffer.from('__proto__', 'latin1')));
});

test("after hardening, kong-pdk's decoder accepts the message instead of throwing", (t) => {
  // Importing the module patched the decoder already (as the plugin-server entry does); the
  // end-to-end isolation case 37 shows the crash and the fail-open without it.
  hardenPluginServer();
  const decoded = new Decoder().decode(packedHeaders()) as [
    number,
    number,
    null,
    { Data: Record<string, string[]> },
  ];
  t.deepEqual(Object.keys(decoded[3].Data).sort(), ['\0_proto__', 'x-tenant-id']);
  t.is(Object.getPrototypeOf(decoded[3].Data), Object.prototype, 'no prototype was replaced');
});

test('other decode errors are left alone', (t) => {
  hardenPluginServer();
  t.throws(() => new Decoder().decode(Uint8Array.from([0xc1])));
});

test('log lines: one plain line, escape codes and newlines flattened', (t) => {
  t.is(logLine('info', ['server started at', '/x.sock']), 'info: server started at /x.sock');
  t.is(logLine('error', ['\x1b[31mboom\x1b[0m\n  at f']), 'error: boom |   at f');
  t.is(logLine('warn', [{ a: 1 }]), 'warn: {"a":1}');
});

test('a built plugin server logs clean single lines (no colour, cursor codes or repeats)', async (t) => {
  const root = path.resolve(__dirname, '..', '..');
  const bin = path.join(root, 'node_modules', 'kong-pdk', 'bin', 'kong-js-pluginserver');
  const dir = path.join(root, 'dist', 'pluginservers', 'tenant-auth');
  const sockDir = mkdtempSync(path.join(tmpdir(), 'ps-log-'));
  const child = spawn(process.execPath, [
    bin,
    '-d',
    dir,
    '-p',
    sockDir,
    '--sock-name',
    'x.sock',
    '-v',
  ]);
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (out += c.toString('utf8')));
  const deadline = Date.now() + 15000;
  while (!out.includes('server started') && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 50));
  child.kill('SIGTERM');
  t.false(out.includes('\x1b'), 'no escape codes');
  const lines = out.split('\n').filter(Boolean);
  t.deepEqual(
    lines.filter((l) => l.includes('server started')),
    [`info: server started at ${path.join(sockDir, 'x.sock')}`],
  );
});

/** A kong-pdk Server in this process, serving one plugin written for the case. */
async function serverWith(source: string) {
  const dir = mkdtempSync(path.join(tmpdir(), 'ps-events-'));
  writeFileSync(path.join(dir, 'probe.js'), source);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Server = require('kong-pdk/server.js') as new (
    dir: string,
    logger: unknown,
  ) => {
    events: Map<number, unknown>;
    StartInstance(cfg: { Name: string; Config: string }): Promise<{ Id: number }>;
    HandleEvent(e: {
      InstanceId: number;
      EventName: string;
    }): Promise<{ Data: unknown; EventId: number }>;
    close(): void;
  };
  const quiet = { debug() {}, info() {}, warn() {}, error() {} };
  const server = new Server(dir, quiet);
  const { Id } = await server.StartInstance({ Name: 'probe', Config: '{}' });
  return { server, Id };
}

test('kong-pdk event map: a phase without PDK calls leaves no entry behind', async (t) => {
  const { server, Id } = await serverWith(
    'class Plugin { async access() {} }\nmodule.exports = { Plugin, Version: "1", Priority: 1, Schema: [] };\n',
  );
  for (let i = 0; i < 50; i++) {
    const r = await server.HandleEvent({ InstanceId: Id, EventName: 'access' });
    t.is(r.Data, 'ret');
  }
  t.is(server.events.size, 0, 'kong-pdk 0.6.0 alone keeps all 50');
  server.close();
});

test('kong-pdk event map: an event that hands Kong kong.response.exit is dropped (Kong never steps it again)', async (t) => {
  const { server, Id } = await serverWith(
    'class Plugin { async access(kong) { kong.response.exit(403, "no") } }\nmodule.exports = { Plugin, Version: "1", Priority: 1, Schema: [] };\n',
  );
  for (let i = 0; i < 50; i++) {
    const r = await server.HandleEvent({ InstanceId: Id, EventName: 'access' });
    t.like(r.Data, { Method: 'kong.response.exit' });
  }
  t.is(server.events.size, 0);
  t.is(pendingPluginServerEvents(), 0);
  server.close();
});
