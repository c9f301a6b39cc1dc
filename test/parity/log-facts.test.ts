/**
 * The log facts kong.yml's pre-function log snippet saves (lib/pluginserver/pdk-log-facts.lua,
 * `kong.ctx.shared.kta_log_facts`) are what the real Kong 3.9.3's `kong.log.serialize()` says
 * for the same request, field by field: circuit-breaker's outcomes and token-meter's cache-hit
 * records read them instead of the serializer (lib/pluginserver/log-facts.ts). A second log
 * snippet, after it, writes both to Kong's error log; the requests cover the three sources (the
 * upstream answered, Kong's error handler after a failed proxy, a plugin's exit). Only the real
 * Kong runs pre-function log snippets (the harness runs none: its log phases read the
 * serializer), so this runs on Kong; needs a Kong 3.9 (fails, does not skip, without one).
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { locateKong, startKong, type KongGateway } from '../../kong-runner/index';
import { ROOT } from '../helpers/frontdoor';
import { startRecordingUpstream, type RecordingUpstream } from './rig';

const LOG_FACTS = readFileSync(path.join(ROOT, 'lib/pluginserver/pdk-log-facts.lua'), 'utf8');

// Runs after the facts snippet in the same log phase: the facts, then the serializer's fields.
const COMPARE = `
return function()
  local f = kong.ctx.shared.kta_log_facts or {}
  local s = kong.log.serialize()
  local line = function(...)
    local out = {}
    for i = 1, select('#', ...) do out[i] = tostring((select(i, ...))) end
    return table.concat(out, '|')
  end
  kong.log.err('kta-log-facts ', line(f.request_id, f.status, f.source, f.upstream_status,
      f.proxy_latency, f.request_latency),
    ' serialize ', line(s.request.id, s.response.status, kong.response.get_source(),
      s.upstream_status, s.latencies.proxy, s.latencies.request), ' end')
end
`;

interface Logged {
  readonly facts: string[];
  readonly serialize: string[];
}

let gw: KongGateway | undefined;
let upstream: RecordingUpstream | undefined;

test.before(async () => {
  if (!locateKong())
    throw new Error(
      'no Kong 3.9 on this machine (KONG_INSTALL_DIR, /opt/kong-3.9.3 or PATH): install it ' +
        'with `scripts/services/kong.sh install`; these facts are the real Kong serializer’s.',
    );
  upstream = await startRecordingUpstream();
  gw = await startKong({
    config: {
      _format_version: '3.0',
      services: [
        { name: 'llm', url: upstream.url, routes: [{ name: 'ai', paths: ['/v1'] }] },
        // Nothing listens on port 9 of 127.0.0.1: Kong's error handler answers 502.
        { name: 'down', url: 'http://127.0.0.1:9', routes: [{ name: 'down', paths: ['/down'] }] },
      ],
      plugins: [
        { name: 'key-auth', route: 'ai', config: {} },
        { name: 'pre-function', config: { log: [LOG_FACTS, COMPARE] } },
      ],
      consumers: [{ username: 'u', keyauth_credentials: [{ key: 'k' }] }],
    },
    pluginServers: {},
    label: 'log-facts',
  });
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
});

/** Sends a request; returns its status, its X-Kong-Request-Id and what the log snippets wrote. */
async function logged(
  p: string,
  headers: Record<string, string>,
): Promise<{ status: number; id: string; log: Logged }> {
  const g = gw as KongGateway;
  const r = await fetch(`${g.url}${p}`, { headers });
  await r.text();
  const id = r.headers.get('x-kong-request-id') ?? '';
  const pattern = new RegExp(`kta-log-facts (${id}\\|.*?) serialize (.*?) end`);
  for (let i = 0; i < 100; i++) {
    const m = pattern.exec(g.errorLog());
    if (m?.[1] && m[2]) {
      return { status: r.status, id, log: { facts: m[1].split('|'), serialize: m[2].split('|') } };
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no log line for request ${id}`);
}

test.serial(
  'the upstream answered: the same id, status, source, upstream status, latencies',
  async (t) => {
    const { status, id, log } = await logged('/v1/models', { apikey: 'k' });
    t.is(status, 200);
    t.truthy(id);
    t.deepEqual(log.facts, log.serialize);
    const [rid, st, source, upstreamStatus, proxy, request] = log.facts;
    t.deepEqual([rid, st, source, upstreamStatus], [id, '200', 'service', '200']);
    t.true(Number(proxy) >= 0 && Number(request) >= 0, log.facts.join('|'));
  },
);

test.serial('Kong’s error handler after a failed proxy: the same facts', async (t) => {
  const { status, id, log } = await logged('/down', {});
  t.is(status, 502);
  t.deepEqual(log.facts, log.serialize);
  const [rid, st, source, upstreamStatus] = log.facts;
  t.deepEqual([rid, st, source], [id, '502', 'error']);
  // One 502 per try (Kong retries a refused connection).
  t.regex(upstreamStatus ?? '', /^502(, 502)*$/);
});

test.serial('a plugin’s exit (key-auth’s 401): the same facts, no upstream', async (t) => {
  const { status, id, log } = await logged('/v1/models', {});
  t.is(status, 401);
  t.deepEqual(log.facts, log.serialize);
  const [rid, st, source, upstreamStatus, proxy] = log.facts;
  t.deepEqual([rid, st, source, upstreamStatus, proxy], [id, '401', 'exit', '', '-1']);
});
