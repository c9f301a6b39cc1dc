import test from 'ava';
import { startGateway, ConfigError } from '../../harness/index';
import { ORDER_DIR, PROBE_DIR, send, startUpstream } from './helpers';

const until = async (cond: () => boolean): Promise<void> => {
  for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 25));
};

test('rewrite runs global plugins only; route config takes over in access', async (t) => {
  const upstream = await startUpstream();
  t.teardown(() => upstream.close());
  const gw = await startGateway({
    pluginServers: { 'harness-probe': PROBE_DIR, 'harness-order': ORDER_DIR },
    config: {
      _format_version: '3.0',
      services: [
        {
          name: 's',
          url: upstream.url,
          routes: [
            {
              name: 'r',
              paths: ['/'],
              plugins: [{ name: 'harness-probe', config: { tag: 'route' } }],
            },
          ],
        },
      ],
      plugins: [
        { name: 'harness-probe', config: { tag: 'global' } },
        { name: 'harness-order', config: { tag: 'g-order' } },
      ],
    },
  });
  t.teardown(() => gw.close());
  const r = await send(`${gw.url}/x`);
  t.is(r.status, 200);
  t.is(upstream.last('/x')?.headers['x-order-trace'], 'global:rewrite,route:access,g-order:access');
});

test('a plugin config that does not validate stops start-up and names the field path', async (t) => {
  const err = await t.throwsAsync(
    startGateway({
      pluginServers: { 'harness-probe': PROBE_DIR },
      config: {
        _format_version: '3.0',
        services: [
          {
            name: 's',
            url: 'http://127.0.0.1:9',
            routes: [
              {
                name: 'ai',
                paths: ['/'],
                plugins: [
                  {
                    name: 'harness-probe',
                    config: {
                      mode: 'nope',
                      limits: { rpm: 0, algorithms: ['HS256', 'none'], labels: { a: 1 } },
                      extra: true,
                    },
                  },
                ],
              },
            ],
          },
        ],
      },
    }),
    { instanceOf: ConfigError },
  );
  const problems = (err as ConfigError).problems;
  t.true(
    problems.includes(
      `plugin 'harness-probe' on route 'ai': config.mode: expected one of: trace, pdk, exit, error, crash, unknown, bad-pdk, consumer, authenticate`,
    ),
  );
  t.true(
    problems.includes(
      `plugin 'harness-probe' on route 'ai': config.limits.rpm: value should be between 1 and 1000`,
    ),
  );
  t.true(
    problems.includes(
      `plugin 'harness-probe' on route 'ai': config.limits.algorithms[2]: expected one of: HS256, RS256`,
    ),
  );
  t.true(
    problems.includes(
      `plugin 'harness-probe' on route 'ai': config.limits.labels.a: expected a string`,
    ),
  );
  t.true(problems.includes(`plugin 'harness-probe' on route 'ai': config.extra: unknown field`));
});

test('kong.yml problems are reported before anything starts', async (t) => {
  const err = await t.throwsAsync(
    startGateway({
      pluginServers: {},
      config: {
        _format_version: '2.1',
        services: [
          { name: 's', url: 'http://127.0.0.1:9', routes: [{ name: 'r', paths: ['nope'] }] },
        ],
        plugins: [{ name: 'ghost' }],
      },
    }),
    { instanceOf: ConfigError },
  );
  const text = (err as ConfigError).problems.join('\n');
  t.regex(text, /_format_version: expected "3\.0"/);
  t.regex(text, /services\[0\]\.routes\[0\]\.paths\[1\]: should start with: \//);
});

test('a plugin server that dies is respawned; the in-flight phase is skipped as in Kong, the next request works', async (t) => {
  const upstream = await startUpstream();
  t.teardown(() => upstream.close());
  const gw = await startGateway({
    pluginServers: { 'harness-probe': PROBE_DIR },
    config: {
      _format_version: '3.0',
      services: [
        {
          name: 's',
          url: upstream.url,
          routes: [
            {
              name: 'crash',
              paths: ['/crash'],
              plugins: [{ name: 'harness-probe', config: { mode: 'crash' } }],
            },
            {
              name: 'ok',
              paths: ['/ok'],
              plugins: [{ name: 'harness-probe', config: { tag: 'after' } }],
            },
          ],
        },
      ],
    },
  });
  t.teardown(() => gw.close());
  const first = gw.pluginServerInfo('harness-probe');
  t.is(first.restarts, 0);
  const crashed = await send(`${gw.url}/crash`);
  // mp_rpc.lua handle_event only logs the RPC error ("no data"): the request goes on.
  t.is(crashed.status, 200);
  t.regex(
    gw.requestStats(String(crashed.headers['x-kong-request-id']))?.pdkErrors.join('\n') ?? '',
    /rpc error: no data/,
  );
  await until(() => gw.pluginServerInfo('harness-probe').restarts === 1);
  const info = gw.pluginServerInfo('harness-probe');
  t.is(info.restarts, 1);
  t.not(info.pid, first.pid);
  const ok = await send(`${gw.url}/ok/x`);
  t.is(ok.status, 200);
  t.is(upstream.last('/x')?.headers['x-probe-trace'], 'after:access');
});
