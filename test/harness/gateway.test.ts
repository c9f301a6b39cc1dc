import test from 'ava';
import { request } from 'node:http';
import { startGateway, type Gateway } from '../../harness/index';
import {
  ORDER_DIR,
  PROBE_DIR,
  STOCK_ERRORS,
  send,
  startSink,
  startUpstream,
  type Upstream,
} from './helpers';

let gw: Gateway;
let upstream: Upstream;
let sink: Awaited<ReturnType<typeof startSink>>;
const logs: string[] = [];

test.before(async () => {
  upstream = await startUpstream();
  sink = await startSink();
  const probe = (config: Record<string, unknown> = {}) => ({ name: 'harness-probe', config });
  gw = await startGateway({
    // Kong's stock error pages (kong_defaults.lua), not the project's OpenAI-shaped template.
    kongConf: STOCK_ERRORS,
    pluginServers: { 'harness-probe': PROBE_DIR, 'harness-order': ORDER_DIR },
    logger: (l) => logs.push(l),
    config: {
      _format_version: '3.0',
      services: [
        {
          name: 'svc',
          url: `${upstream.url}/base`,
          routes: [
            {
              name: 'trace',
              paths: ['/trace'],
              plugins: [probe({ tag: 'p' }), { name: 'harness-order' }],
            },
            { name: 'pdk', paths: ['/pdk'], plugins: [probe({ mode: 'pdk' })] },
            {
              name: 'exit',
              paths: ['/exit'],
              plugins: [probe({ mode: 'exit' }), { name: 'harness-order' }],
            },
            { name: 'error', paths: ['/error'], plugins: [probe({ mode: 'error' })] },
            { name: 'unknown', paths: ['/unknown'], plugins: [probe({ mode: 'unknown' })] },
            { name: 'badpdk', paths: ['/badpdk'], plugins: [probe({ mode: 'bad-pdk' })] },
            { name: 'stream', paths: ['/stream'], plugins: [{ name: 'harness-order' }] },
            {
              name: 'buffered',
              paths: ['/buffered'],
              plugins: [probe({ response_suffix: '+probe' })],
            },
            {
              name: 'auth',
              paths: ['/auth'],
              plugins: [
                { name: 'key-auth', config: { hide_credentials: true } },
                probe({ mode: 'consumer' }),
              ],
            },
            {
              name: 'scoped',
              paths: ['/scoped'],
              plugins: [{ name: 'key-auth' }, { name: 'harness-order', config: { tag: 'route' } }],
            },
            { name: 'log', paths: ['/log'], plugins: [probe({ sink: sink.url })] },
            { name: 'plain', paths: ['~/plain/\\d+$'], strip_path: false },
          ],
        },
        { name: 'dead', url: 'http://127.0.0.1:1', routes: [{ name: 'dead', paths: ['/dead'] }] },
        {
          name: 'slow',
          url: `${upstream.url}/slow`,
          read_timeout: 300,
          routes: [{ name: 'slow', paths: ['/slow'] }],
        },
      ],
      consumers: [
        {
          username: 'alice',
          custom_id: 'c-alice',
          keyauth_credentials: [{ key: 'alice-key' }],
          plugins: [{ name: 'harness-order', config: { tag: 'alice' } }],
        },
        { username: 'bob', keyauth_credentials: [{ key: 'bob-key' }] },
      ],
      plugins: [],
    },
  });
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
  await sink?.close();
});

test.serial(
  'phases run by descending priority; strip_path and Kong headers reach the upstream',
  async (t) => {
    const r = await send(`${gw.url}/trace/x?y=1`, { headers: { 'x-forwarded-for': '10.0.0.1' } });
    t.is(r.status, 200);
    const seen = upstream.last('/base/x');
    t.truthy(seen);
    t.is(seen?.url, '/base/x?y=1');
    // rewrite runs global plugins only: the route-scoped probe has no rewrite entry in the trace
    t.is(seen?.headers['x-order-trace'], 'p:access,order:access');
    t.is(seen?.headers['x-forwarded-for'], '10.0.0.1, 127.0.0.1');
    t.is(seen?.headers['x-forwarded-prefix'], '/trace');
    t.is(seen?.headers['x-real-ip'], '127.0.0.1');
    t.regex(String(seen?.headers.via), /^1\.1 kong\/3\.9\.3$/);
    t.is(seen?.headers['x-kong-request-id'], r.headers['x-kong-request-id']);
    t.regex(String(r.headers['x-kong-request-id']), /^[0-9a-f]{32}$/);
    t.is(r.headers.via, '1.1 upstream-proxy, 1.1 kong/3.9.3');
    t.truthy(r.headers['x-kong-upstream-latency']);
    t.truthy(r.headers['x-kong-proxy-latency']);
    const stats = gw.requestStats(String(r.headers['x-kong-request-id']));
    // probe access: HandleEvent + get + set + set_header = 4; order access: 4
    t.is(stats?.plugins['harness-probe']?.access?.roundTrips, 4);
    t.deepEqual(stats?.plugins['harness-order']?.access?.pdkCalls, {
      'kong.ctx.shared.get': 1,
      'kong.ctx.shared.set': 1,
      'kong.service.request.set_header': 1,
    });
  },
);

test.serial('PDK getters and service.request setters behave as in Kong', async (t) => {
  const r = await send(`${gw.url}/pdk/sub?a=1&a=2&flag`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-multi': ['one', 'two'],
      'x-remove-me': 'bye',
    },
    body: '{"hello":"world"}',
  });
  t.is(r.status, 200);
  // set in access, then overwritten by the same plugin's response phase
  t.is(r.headers['x-probe-response'], 'response-phase');
  const seen = upstream.last('/rewritten');
  t.truthy(seen, 'set_path was applied');
  t.is(seen?.method, 'PUT');
  t.is(seen?.url, '/rewritten?q=1');
  t.is(seen?.body, '{"replaced":true}');
  t.is(seen?.headers['x-set'], 'one');
  t.is(seen?.headers['x-added'], 'a, b');
  t.is(seen?.headers['x-bulk-2'], '2a, 2b');
  t.is(seen?.headers['x-remove-me'], undefined);
  const res = JSON.parse(
    Buffer.from(String(seen?.headers['x-probe-results']), 'base64').toString('utf8'),
  ) as Record<string, unknown>;
  t.is(res.method, 'POST');
  t.is(res.path, '/pdk/sub');
  t.is(res.pathWithQuery, '/pdk/sub?a=1&a=2&flag');
  t.is(res.rawQuery, 'a=1&a=2&flag');
  t.deepEqual(res.query, { a: ['1', '2'], flag: [] });
  t.is(res.queryArg, '1');
  // kong/tools/http.lua (3.9.3) get_header: $http_x_multi is "one, two", so Kong returns
  // ngx.req.get_headers()["x-multi"][1]
  t.is(res.header, 'one');
  t.deepEqual((res.headers as Record<string, unknown>)['x-multi'], ['one', 'two']);
  t.true(res.rawBodyIsBytes);
  t.is(res.rawBody, '{"hello":"world"}');
  t.deepEqual(res.body, { hello: 'world' });
  t.is(res.scheme, 'http');
  t.is(res.host, '127.0.0.1');
  t.is(res.port, gw.port);
  t.is(res.httpVersion, 1.1);
  t.is(typeof res.startTime, 'number');
  t.is(res.clientIp, '127.0.0.1');
  t.is(res.clientForwardedIp, '127.0.0.1');
  t.is(res.protocol, 'http');
  t.is((res.route as { name: string }).name, 'pdk');
  t.is((res.service as { name: string }).name, 'svc');
  t.regex(String(res.nodeId), /^[0-9a-f-]{36}$/);
  t.is(res.subsystem, 'http');
  t.is(res.ngxCtx, 'ngx-value');
});

test.serial(
  'kong.response.exit short-circuits access and the proxy, but log still runs',
  async (t) => {
    const before = upstream.seen.length;
    const r = await send(`${gw.url}/exit`);
    t.is(r.status, 418);
    t.deepEqual(JSON.parse(r.body), { exited_by: 'probe' });
    t.is(r.headers['x-exit'], 'yes');
    t.is(r.headers.server, 'kong/3.9.3');
    t.truthy(r.headers['x-kong-response-latency']);
    t.is(upstream.seen.length, before, 'no proxying');
    const stats = gw.requestStats(String(r.headers['x-kong-request-id']));
    t.is(stats?.plugins['harness-order'], undefined, 'lower-priority access did not run');
  },
);

test.serial('kong.response.error renders Kong error template with request id', async (t) => {
  const r = await send(`${gw.url}/error`);
  t.is(r.status, 403);
  t.is(r.headers['content-type'], 'application/json; charset=utf-8');
  t.deepEqual(JSON.parse(r.body), {
    message: 'go away',
    request_id: r.headers['x-kong-request-id'],
  });
});

test.serial('an unimplemented PDK method rejects the plugin promise with its name', async (t) => {
  const r = await send(`${gw.url}/unknown`);
  t.is(r.status, 200);
  t.regex(String(upstream.last('/base')?.headers['x-probe-error']), /kong\.request\.get_foo_bar/);
});

test.serial('a PDK call that raises in Kong gives Kong 500 and is recorded', async (t) => {
  const r = await send(`${gw.url}/badpdk`);
  t.is(r.status, 500);
  t.is(JSON.parse(r.body).message, 'An unexpected error occurred');
  const stats = gw.requestStats(String(r.headers['x-kong-request-id']));
  t.regex(stats?.pdkErrors[0] ?? '', /kong\.service\.request\.set_header: invalid header value/);
});

test.serial('without a response phase the upstream response streams to the client', async (t) => {
  const firstChunk = await new Promise<string>((resolve, reject) => {
    const req = request(`${gw.url}/stream`, { headers: { 'x-mode': 'stream' } }, (res) => {
      res.once('data', (c: Buffer) => resolve(c.toString('utf8')));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
    setTimeout(
      () => reject(new Error('first chunk did not arrive before the upstream finished')),
      5000,
    ).unref();
  });
  t.is(firstChunk, 'data: first\n\n');
  upstream.releaseStream();
});

test.serial('with a response phase the body is buffered and can be replaced', async (t) => {
  const r = await send(`${gw.url}/buffered`);
  t.is(r.status, 200);
  t.is(r.body, '{"url":"/base"}+probe');
  t.is(r.headers['x-upstream-seen'], 'yes');
  t.is(r.headers['x-probe-response'], 'response-phase');
});

test.serial(
  'key-auth: 401 bodies as Kong 3.9.3, consumer visible to later plugins, headers set',
  async (t) => {
    const none = await send(`${gw.url}/auth`);
    t.is(none.status, 401);
    t.is(none.headers['www-authenticate'], 'Key');
    t.is(JSON.parse(none.body).message, 'No API key found in request');
    const bad = await send(`${gw.url}/auth?apikey=nope`);
    t.is(bad.status, 401);
    t.is(JSON.parse(bad.body).message, 'Unauthorized');
    const ok = await send(`${gw.url}/auth?apikey=alice-key&x=1`);
    t.is(ok.status, 200);
    const seen = upstream.last('/base');
    t.is(seen?.url, '/base?x=1', 'hide_credentials removed the query key');
    t.is(seen?.headers['x-consumer-username'], 'alice');
    t.is(seen?.headers['x-consumer-custom-id'], 'c-alice');
    t.truthy(seen?.headers['x-credential-identifier']);
    const seenBy = JSON.parse(String(seen?.headers['x-probe-consumer'])) as {
      consumer: { username: string };
      credential: { key: string };
    };
    t.is(seenBy.consumer.username, 'alice');
    t.is(seenBy.credential.key, 'alice-key');
  },
);

test.serial('consumer-scoped config wins for plugins running after auth', async (t) => {
  await send(`${gw.url}/scoped`, { headers: { apikey: 'alice-key' } });
  t.is(upstream.last('/base')?.headers['x-order-trace'], 'alice:access');
  await send(`${gw.url}/scoped`, { headers: { apikey: 'bob-key' } });
  t.is(upstream.last('/base')?.headers['x-order-trace'], 'route:access');
});

test.serial(
  'no route -> 404 with Kong body; dead upstream -> 502; slow upstream -> 504',
  async (t) => {
    const r = await send(`${gw.url}/nothing-here`);
    t.is(r.status, 404);
    t.deepEqual(JSON.parse(r.body), {
      message: 'no Route matched with those values',
      request_id: r.headers['x-kong-request-id'],
    });
    const dead = await send(`${gw.url}/dead`, { headers: { accept: 'application/json' } });
    t.is(dead.status, 502);
    t.is(
      JSON.parse(dead.body).message,
      'An invalid response was received from the upstream server',
    );
    const slow = await send(`${gw.url}/slow`);
    t.is(slow.status, 504);
    t.is(
      slow.body,
      `The upstream server is timing out\nrequest_id: ${String(slow.headers['x-kong-request-id'])}\n`,
    );
  },
);

test.serial('regex route without strip_path', async (t) => {
  const r = await send(`${gw.url}/plain/42`);
  t.is(r.status, 200);
  t.is(upstream.last('/base/plain')?.url, '/base/plain/42');
  t.is((await send(`${gw.url}/plain/x`)).status, 404);
});

test.serial(
  'log phase runs after the response on a snapshot, with only the methods Kong allows there',
  async (t) => {
    const r = await send(`${gw.url}/log`, { headers: { 'x-multi': ['one', 'two'] } });
    t.is(r.status, 200);
    const id = String(r.headers['x-kong-request-id']);
    const report = (await sink.next()) as Record<string, unknown>;
    await gw.logDone(id);
    t.is(report.trace, 'probe:access');
    t.is(report.header, 'one', 'log-phase get_header returns the first saved value');
    t.is(report.status, 200);
    t.is(report.responseHeader, id);
    t.is(report.source, 'service');
    t.is(((report.serialize as Record<string, unknown>).request as { id: string }).id, id);
    const stats = gw.requestStats(id);
    t.regex(
      stats?.pdkErrors.join('\n') ?? '',
      /harness-probe log kong\.request\.get_method: API disabled in the context of ngx\.timer/,
    );
    t.false(sink.reports.some((x) => (x as { unreachable?: boolean }).unreachable === true));
  },
);
