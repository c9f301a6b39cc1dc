// Behaviours a plugin can observe, checked against Kong 3.9.3's source (each test names the file).
import test from 'ava';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { startGateway, type Gateway } from '../../harness/index';
import { FIXTURES, PROBE_DIR, ORDER_DIR, STOCK_ERRORS, send, startSink } from './helpers';

const READER_DIR = join(FIXTURES, 'harness-reader');

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

let gw: Gateway;
let upstream: Server;
const seen: Seen[] = [];
let sink: Awaited<ReturnType<typeof startSink>>;

const lastSeen = (): Seen | undefined => seen[seen.length - 1];
const decode = (h: string | string[] | undefined): Record<string, unknown> =>
  JSON.parse(Buffer.from(String(h), 'base64').toString('utf8')) as Record<string, unknown>;

test.before(async () => {
  // An upstream that answers every request with a repeated response header.
  upstream = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      });
      res.writeHead(200, { 'content-type': 'application/json', 'x-dup': ['a', 'b'] });
      res.end('{"ok":true}');
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
  const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  sink = await startSink();
  const reader = (config: Record<string, unknown> = {}) => ({ name: 'harness-reader', config });
  gw = await startGateway({
    // Kong's stock error pages (kong_defaults.lua), not the project's OpenAI-shaped template.
    kongConf: STOCK_ERRORS,
    pluginServers: {
      'harness-probe': PROBE_DIR,
      'harness-order': ORDER_DIR,
      'harness-reader': READER_DIR,
    },
    config: {
      _format_version: '3.0',
      services: [
        {
          name: 'svc',
          url: `${upstreamUrl}/up`,
          routes: [
            {
              name: 'reads',
              paths: ['/reads'],
              plugins: [{ name: 'harness-probe', config: { mode: 'pdk' } }, reader()],
            },
            { name: 'many', paths: ['/many'], plugins: [reader({ header: 'x-h-0' })] },
            {
              name: 'ctor',
              paths: ['/ctor'],
              plugins: [reader({ ctor_throw: true }), { name: 'harness-order' }],
            },
            {
              name: 'logread',
              paths: ['/logread'],
              plugins: [
                { name: 'key-auth', config: { hide_credentials: true } },
                reader({ header: 'x-consumer-username', sink: sink.url }),
              ],
            },
            { name: 'resp', paths: ['/resp'], plugins: [reader({ response_header: 'x-dup' })] },
            {
              name: 'late-exit',
              paths: ['/late-exit'],
              plugins: [{ name: 'harness-probe', config: { response_suffix: '+p' } }],
            },
            { name: 'keyauth', paths: ['/keyauth'], plugins: [{ name: 'key-auth' }] },
            {
              name: 'numbers',
              paths: ['/numbers'],
              plugins: [reader({ numbers_in_header_array: true })],
            },
          ],
        },
      ],
      consumers: [{ username: 'alice', keyauth_credentials: [{ key: 'alice-key' }] }],
      // A global reader: its rewrite copies x-give-key into apikey before key-auth runs.
      plugins: [reader({ rewrite_copy_from: 'x-give-key', rewrite_copy_to: 'apikey' })],
    },
  });
});

test.after.always(async () => {
  await gw?.close();
  await new Promise<void>((r) => {
    upstream?.closeAllConnections();
    upstream?.close(() => r());
  });
  await sink?.close();
});

test.serial(
  'a later plugin reads the request as earlier plugins left it; get_header gives the first of repeated values',
  async (t) => {
    const r = await send(`${gw.url}/reads/x?a=1`, {
      method: 'POST',
      headers: { 'x-multi': ['one', 'two'], 'content-type': 'application/json' },
      body: '{"hello":"world"}',
    });
    t.is(r.status, 200);
    const seenBy = decode(lastSeen()?.headers['x-reader']);
    // kong/tools/http.lua get_header: "$http_x_multi" is "one, two" -> ngx.req.get_headers()[name][1]
    t.is(seenBy.header, 'one');
    // kong/pdk/request.lua get_raw_body reads ngx.req.get_body_data(): the probe's set_body
    t.is(seenBy.rawBody, '{"replaced":true}');
    t.deepEqual(seenBy.body, { replaced: true });
    // get_raw_query reads var.args (set_raw_query), get_method ngx.req.get_method() (set_method)
    t.is(seenBy.rawQuery, 'q=1');
    t.deepEqual(seenBy.query, { q: ['1'] });
    t.is(seenBy.method, 'PUT');
  },
);

test.serial(
  'kong.request.get_headers returns at most 100 header lines unless asked for more',
  async (t) => {
    const headers: Record<string, string> = {};
    for (let i = 0; i < 120; i++) headers[`x-h-${i}`] = String(i);
    const r = await send(`${gw.url}/many`, { headers });
    t.is(r.status, 200);
    const seenBy = decode(lastSeen()?.headers['x-reader']);
    t.is(seenBy.header, '0');
    t.is(seenBy.headerCount, 100);
    t.true((seenBy.headerCountMax as number) > 120);
  },
);

test.serial(
  'a plugin whose StartInstance fails makes the access phase a Kong 500, not a skipped plugin',
  async (t) => {
    const before = seen.length;
    const r = await send(`${gw.url}/ctor`);
    // plugin.lua get_instance_id: error(err) -> kong/init.lua execute_collecting_plugins_iterator
    t.is(r.status, 500);
    t.deepEqual(JSON.parse(r.body), {
      message: 'An unexpected error occurred',
      request_id: r.headers['x-kong-request-id'],
    });
    t.is(seen.length, before, 'the request was not proxied');
    const stats = gw.requestStats(String(r.headers['x-kong-request-id']));
    t.regex(stats?.pdkErrors.join('\n') ?? '', /plugin\.StartInstance: harness-reader: refusing/);
    t.is(stats?.plugins['harness-order']?.access, undefined, 'later access handlers skipped');
  },
);

test.serial(
  'the log phase sees the request headers as plugins left them; serialize redacts and applies set_serialize_value modes',
  async (t) => {
    const r = await send(`${gw.url}/logread?apikey=alice-key&x=1`, {
      headers: { apikey: 'alice-key', authorization: 'Bearer secret' },
    });
    t.is(r.status, 200);
    // key-auth hide_credentials: clear_query_arg + clear_header, seen by the later plugin
    t.is(decode(lastSeen()?.headers['x-reader']).rawQuery, 'x=1');
    const report = (await sink.next()) as {
      header: unknown;
      apikey: unknown;
      serialize: Record<string, unknown>;
    };
    await gw.logDone(String(r.headers['x-kong-request-id']));
    // plugin.lua: saved.request_headers = ngx.req.get_headers() when the log phase starts
    t.is(report.header, 'alice');
    t.is(report.apikey, null);
    const s = report.serialize;
    const req = s.request as { headers: Record<string, unknown>; method: string };
    // kong/pdk/log.lua serialize: Authorization redacted, current headers
    t.is(req.headers.authorization, 'REDACTED');
    t.deepEqual(req.headers['x-consumer-username'], ['alice']);
    t.is(req.headers.apikey, undefined);
    // edit_result: replace works on Kong's own fields, add keeps the first, nil deletes
    t.is(req.method, 'REPLACED');
    t.deepEqual(s.reader, { only_if_absent: 'first' });
    t.false('nowhere' in s);
    t.false('route' in s);
  },
);

test.serial(
  'kong.response.get_header returns the first of repeated response headers',
  async (t) => {
    const r = await send(`${gw.url}/resp`);
    t.is(r.status, 200);
    t.is(r.headers['x-reader-response'], 'a');
  },
);

test.serial(
  'an exit in the response phase keeps the proxied headers (X-Kong-Upstream-Latency, Via)',
  async (t) => {
    const r = await send(`${gw.url}/late-exit`);
    t.is(r.status, 200);
    t.is(r.body, '{"ok":true}+p');
    // kong/runloop/handler.lua header_filter.after branches on ctx.KONG_PROXIED only
    t.truthy(r.headers['x-kong-upstream-latency']);
    t.truthy(r.headers['x-kong-proxy-latency']);
    t.is(r.headers.via, '1.1 kong/3.9.3');
    t.is(r.headers['x-kong-response-latency'], undefined);
  },
);

test.serial('key-auth reads the request headers as a rewrite plugin left them', async (t) => {
  const r = await send(`${gw.url}/keyauth`, { headers: { 'x-give-key': 'alice-key' } });
  t.is(r.status, 200);
  t.is(lastSeen()?.headers['x-consumer-username'], 'alice');
});

test.serial('set_headers refuses non-string entries in a value array, as Kong does', async (t) => {
  const before = seen.length;
  const r = await send(`${gw.url}/numbers`);
  // kong/pdk/private/checks.lua validate_headers raises -> access 500
  t.is(r.status, 500);
  t.is(seen.length, before);
  t.regex(
    gw.requestStats(String(r.headers['x-kong-request-id']))?.pdkErrors.join('\n') ?? '',
    /invalid header value in array "x-numbers": got number, expected string/,
  );
});
