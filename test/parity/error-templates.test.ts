/**
 * Kong's own error pages with kong.conf error settings (issue 7 sets an OpenAI-shaped JSON
 * template): `error_default_type` and `error_template_*` given as `kongConf` to both gateways,
 * the same requests, the same responses. Needs a Kong 3.9 (fails, does not skip, without one).
 */
import test from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGateway } from '../../harness/index';
import type { Gateway } from '../../harness/types';
import { locateKong, startKong } from '../../kong-runner/index';
import { pluginServerDir } from '../helpers/frontdoor';
import { head } from './cases';
import { rawRequest, startRecordingUpstream, type RecordingUpstream } from './rig';

const dir = mkdtempSync(join(tmpdir(), 'error-templates-'));
const JSON_TEMPLATE = join(dir, 'error.json');
const PLAIN_TEMPLATE = join(dir, 'error.txt');
writeFileSync(
  JSON_TEMPLATE,
  '{"error":{"message":"%s","type":"gateway_error","code":null,"param":null},"request_id":"%s"}',
);
writeFileSync(PLAIN_TEMPLATE, 'error: %s (request %s, 100%% ours)\n');

let gateways: { kong: Gateway; harness: Gateway; upstream: RecordingUpstream } | undefined;

test.before(async () => {
  if (!locateKong())
    throw new Error(
      'no Kong 3.9 on this machine (KONG_INSTALL_DIR, /opt/kong-3.9.3 or PATH): install it ' +
        'with `scripts/services/kong.sh install`; this test compares the harness with it.',
    );
  const upstream = await startRecordingUpstream();
  const opts = {
    config: {
      _format_version: '3.0',
      services: [
        { name: 'llm', url: upstream.url, routes: [{ name: 'ai', paths: ['/v1'] }] },
        // Nothing listens on port 9 of 127.0.0.1: Kong's 502.
        { name: 'down', url: 'http://127.0.0.1:9', routes: [{ name: 'down', paths: ['/down'] }] },
      ],
      plugins: [{ name: 'key-auth', route: 'ai', config: {} }],
      consumers: [{ username: 'u', keyauth_credentials: [{ key: 'k' }] }],
    },
    pluginServers: { 'tenant-probe': pluginServerDir('tenant-probe') },
    kongConf: {
      error_default_type: 'application/json',
      error_template_json: JSON_TEMPLATE,
      error_template_plain: PLAIN_TEMPLATE,
    },
  };
  const kong = await startKong({ ...opts, label: 'error-templates' });
  const harness = await startGateway(opts);
  gateways = { kong, harness, upstream };
});

test.after.always(async () => {
  await gateways?.kong.close();
  await gateways?.harness.close();
  await gateways?.upstream.close();
});

const CASES: Array<[string, string]> = [
  ['no key (kong.response.error)', head('GET /v1/models', [], { key: false })],
  ['no key, Accept: text/plain', head('GET /v1/models', ['Accept: text/plain'], { key: false })],
  [
    'no key, Accept: text/html (default template)',
    head('GET /v1/models', ['Accept: text/html'], { key: false }),
  ],
  ['no route', head('GET /nope')],
  [
    'nginx refusal, no Accept (error_default_type)',
    head(
      'GET /v1/models',
      Array.from({ length: 1001 }, (_, i) => `p${i}: 1`),
    ),
  ],
  ['upstream down (error handler 502)', head('GET /down', ['apikey: k'])],
  ['upstream down, Content-Type text/plain', head('GET /down', ['Content-Type: text/plain'])],
  ['a bad request line (before any header)', 'GARBAGE\r\n\r\n'],
];

for (const [name, raw] of CASES) {
  test.serial(`same error page on Kong and the harness: ${name}`, async (t) => {
    if (!gateways) throw new Error('the gateways did not start');
    const norm = async (gw: Gateway) => {
      const r = await rawRequest(gw.port, raw.replace('{{id}}', 'e'));
      return {
        status: r.status,
        contentType: r.headers.find(([k]) => k === 'content-type')?.[1],
        body: r.body.replace(/\b[0-9a-f]{32}\b/g, '<request-id>'),
      };
    };
    const kong = await norm(gateways.kong);
    t.deepEqual(await norm(gateways.harness), kong);
    t.true(kong.status >= 400);
    // The configured templates are in use (the html case keeps Kong's default one).
    if (name.includes('html')) t.regex(kong.body, /<!doctype html>/);
    else t.regex(kong.body, /"type":"gateway_error"|100% ours/);
  });
}
