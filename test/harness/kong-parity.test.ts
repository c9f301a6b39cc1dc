// Kong 3.9.3 details the harness mirrors: normalize_multi_header, Kong.response header order,
// get_headers limits, StartInstance retries, and plugin servers stopped when the process exits.
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGateway } from '../../harness/index';
import { exitHookState } from '../../harness/exit-hooks';
import type { Gateway } from '../../harness/types';
import { FIXTURES, send } from './helpers';

const EDGE_DIR = join(FIXTURES, 'harness-edge');
const FLAKY_DIR = join(FIXTURES, 'harness-flaky');

const until = async (cond: () => boolean): Promise<void> => {
  for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 25));
};

const decode = (v: unknown): Record<string, unknown> =>
  JSON.parse(Buffer.from(String(v), 'base64').toString('utf8')) as Record<string, unknown>;

/**
 * A raw TCP upstream: records each request head byte for byte (a Node HTTP server would trim
 * header values) and answers 200 with x-both, x-upstream and 120 x-many lines.
 */
async function startRawUpstream(): Promise<{
  url: string;
  heads: string[];
  close(): Promise<void>;
}> {
  const heads: string[] = [];
  const many = Array.from({ length: 120 }, (_, i) => `x-many: ${i}\r\n`).join('');
  const server: Server = createServer((sock) => {
    let buf = '';
    sock.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      heads.push(buf.slice(0, end + 2));
      sock.end(
        'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-both: from-upstream\r\n' +
          `x-upstream: yes\r\n${many}content-length: 2\r\nconnection: close\r\n\r\n{}`,
      );
    });
    sock.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    heads,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

let gw: Gateway;
let upstream: Awaited<ReturnType<typeof startRawUpstream>>;

test.before(async () => {
  upstream = await startRawUpstream();
  const route = (name: string, mode: string) => ({
    name,
    paths: [`/${name}`],
    plugins: [{ name: 'harness-edge', config: { mode } }],
  });
  gw = await startGateway({
    pluginServers: { 'harness-edge': EDGE_DIR },
    config: {
      _format_version: '3.0',
      services: [
        {
          name: 's',
          url: upstream.url,
          routes: [
            route('headers', 'headers'),
            route('bad-response', 'bad-max-response'),
            route('bad-service', 'bad-max-service'),
          ],
        },
      ],
    },
  });
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
});

test('an empty header value is sent as a single space (checks.lua normalize_multi_header)', async (t) => {
  const r = await send(`${gw.url}/headers`);
  t.is(r.status, 200);
  const head =
    upstream.heads.find((h) =>
      h.includes('x-kong-request-id: ' + String(r.headers['x-kong-request-id'])),
    ) ?? '';
  t.regex(head, /\r\nx-empty-set: {2}\r\n/, 'set_header("")');
  t.regex(head, /\r\nx-empty-add: {2}\r\n/, 'add_header("")');
  t.regex(head, /\r\nx-empty-multi: {2}\r\nx-empty-multi: b\r\n/, 'set_headers({"", "b"})');
  // Later reads of the request headers see the space too.
  t.deepEqual(decode(/\r\nx-edge-access: (\S+)\r\n/.exec(head)?.[1]), {
    set: ' ',
    add: ' ',
    multi: [' ', 'b'],
  });
});

test('the upstream response headers and status replace those set in access (Kong.response)', async (t) => {
  const r = await send(`${gw.url}/headers`);
  t.is(r.status, 200, 'set_status(299) in access loses to the upstream status');
  t.is(r.headers['x-both'], 'from-upstream');
  t.is(r.headers['x-access-only'], 'kept');
  const seen = decode(r.headers['x-edge-response']);
  t.is(seen.status, 200);
  t.is(seen.both, 'from-upstream');
  t.is(seen.accessOnly, 'kept');
  t.is(seen.respEmpty, ' ', 'kong.response.set_header("") is a space as well');
});

test('response get_headers: 100 lines by default, max 1..1000; service get_headers is an empty map when buffered', async (t) => {
  const seen = decode((await send(`${gw.url}/headers`)).headers['x-edge-response']);
  t.is(seen.lines, 100);
  t.true((seen.linesMax as number) > 120);
  t.is(seen.keysOne, 1);
  // kong/pdk/service/response.lua: a proxy table with only __index; mp_rpc fix_mmap's pairs()
  // finds nothing in it. get_header still finds the name.
  t.deepEqual(seen.serviceHeaders, {});
  t.is(seen.serviceHeader, 'from-upstream');

  for (const [path, message] of [
    ['/bad-response', 'kong.response.get_headers: max_headers must be >= 1'],
    ['/bad-service', 'kong.service.response.get_headers: max_headers must be <= 1000'],
  ] as const) {
    const r = await send(`${gw.url}${path}`);
    t.is(r.status, 500, path);
    const errors = gw.requestStats(String(r.headers['x-kong-request-id']))?.pdkErrors ?? [];
    t.true(
      errors.some((e) => e.includes(message)),
      errors.join('\n'),
    );
  }
});

test('requests waiting on a failing StartInstance start the instance themselves (plugin.lua get_instance_id)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'harness-flaky-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const gate = join(dir, 'go');
  const lines: string[] = [];
  const flakyGw = await startGateway({
    pluginServers: { 'harness-edge': EDGE_DIR, 'harness-flaky': FLAKY_DIR },
    logger: (l) => lines.push(l),
    config: {
      _format_version: '3.0',
      services: [
        {
          name: 's',
          url: upstream.url,
          routes: [
            {
              name: 'flaky',
              paths: ['/flaky'],
              plugins: [
                { name: 'harness-edge', config: { mode: 'arrive' } },
                { name: 'harness-flaky', config: { gate } },
              ],
            },
          ],
        },
      ],
    },
  });
  t.teardown(() => flakyGw.close());
  const replies = Promise.all([1, 2, 3].map(() => send(`${flakyGw.url}/flaky`)));
  // All three passed harness-edge (priority 950) and wait on the blocked first StartInstance.
  await until(() => lines.filter((l) => l.includes('edge-arrived')).length === 3);
  await new Promise((r) => setTimeout(r, 100));
  writeFileSync(gate, 'go');
  const statuses = (await replies).map((r) => r.status).sort();
  t.deepEqual(statuses, [200, 200, 500], 'only the request whose StartInstance failed gets 500');
  const ok = (await replies).filter((r) => r.status === 200);
  t.true(ok.every((r) => r.headers['x-flaky'] === 'ran'));
});

test.serial('close() removes the process exit hook', async (t) => {
  const before = exitHookState().hooks;
  const g = await startGateway({
    pluginServers: { 'harness-edge': EDGE_DIR },
    config: { _format_version: '3.0' },
  });
  t.is(exitHookState().hooks, before + 1);
  t.true(exitHookState().listening);
  await g.close();
  t.is(exitHookState().hooks, before);
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

for (const how of ['exit', 'throw'] as const) {
  test(`plugin servers are stopped when the starting process ends without close() (${how})`, async (t) => {
    const stdout = await new Promise<string>((resolve) => {
      execFile(
        process.execPath,
        ['--import=tsx', join(__dirname, 'orphan-child.ts'), how],
        { timeout: 60000 },
        (_err, out) => resolve(out),
      );
    });
    const pids = JSON.parse(stdout.trim().split('\n').pop() ?? '[]') as number[];
    t.teardown(() => pids.filter(alive).forEach((p) => process.kill(p, 'SIGTERM')));
    t.is(pids.length, 2);
    t.true(pids.every((p) => p > 0));
    await until(() => !pids.some(alive));
    t.deepEqual(pids.filter(alive), [], 'no orphaned plugin server');
  });
}

test('an idle keep-alive client connection stays open past Node’s 5 s, as nginx keeps it (keepalive_timeout 75 s)', async (t) => {
  const { connect } = await import('node:net');
  const port = Number(new URL(gw.url).port);
  const sock = connect(port, '127.0.0.1');
  let closed = false;
  let got = '';
  sock.on('close', () => {
    closed = true;
  });
  sock.on('data', (d: Buffer) => {
    got += d.toString('latin1');
  });
  sock.on('error', () => undefined);
  const ask = () =>
    sock.write('GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
  const answers = () => got.split('HTTP/1.1 ').length - 1;
  await new Promise<void>((r) => sock.once('connect', () => r()));
  ask();
  await until(() => answers() >= 1);
  t.is(answers(), 1);
  t.false(/\r\nconnection: close\r\n/i.test(got), 'the first answer keeps the connection');
  await new Promise((r) => setTimeout(r, 6000));
  t.false(closed, 'still open after 6 s idle');
  ask();
  await until(() => answers() >= 2);
  t.is(answers(), 2, 'the second request is answered on the same connection');
  sock.destroy();
});
