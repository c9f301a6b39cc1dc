'use strict';
/**
 * The transport floor of the chain's design (bench/chain.ts, BENCH_CHAIN_KONG_QUICK): one plugin
 * that makes exactly the PDK calls and Redis round trips the co-hosted chain makes for a cacheable
 * miss, with the same arguments and payload sizes, and none of its work — no JSON parse, no
 * tokenizer, no policy, no crypto, no metrics. Served by a plugin server of ours (harden.js: the
 * same listener, facade and PDK batching), on kong.yml's route with its snippets, so its
 * exchanges are the chain's: access = the phase start, one batch of reads, one batch of writes;
 * log = the phase start, one batch of reads. Redis: in access a pipelined MGET with a script,
 * then a second script; in log four commands in one write. What a request costs here is what the
 * chain would cost if its own code took no time at all. Not a plugin for any route of a user's.
 */
const { createRedis, withDeadline } = require('../../dist/lib/redis/client.js');
const { serveMetrics } = require('../../dist/lib/metrics/registry.js');

const SCRIPT = 'return 1';
const pad = (n) => 'x'.repeat(n);
// Payloads of the sizes the chain writes for a miss (bench/chain.ts's miss, measured on the wire).
const TENANT_CONTEXT = JSON.stringify({ request: pad(32), v: 2, tenantId: 'acme', note: pad(520) });
const METER_STATE = JSON.stringify({ v: 1, requestId: pad(32), note: pad(330) });
const PERSONA = `{"role":"system","content":"${pad(66)}"},`;

class Plugin {
  constructor() {
    this.redis = createRedis({ url: process.env.REDIS_URL || 'redis://127.0.0.1:6379' });
    this.sha = undefined;
    // Its exchanges counted as ours are (kta_pdk_exchanges_total), when the bench asks.
    const port = Number(process.env.KTA_FLOOR_METRICS_PORT || 0);
    if (port > 0) serveMetrics('kta-transport-floor', port);
  }

  async script(keys) {
    const r = this.redis;
    if (!this.sha) this.sha = await withDeadline(r, r.scriptLoad(SCRIPT));
    return withDeadline(r, r.evalSha(this.sha, { keys, arguments: ['1', '2', '3'] }));
  }

  async access(kong) {
    await kong.request.getHeaders(1000);
    await kong.client.getConsumer();
    await kong.request.getMethod();
    await kong.nginx.getVar('upstream_uri');
    await kong.request.getPathWithQuery();
    await kong.request.getPath();
    const raw = await kong.request.getRawBody(1048576);
    await kong.router.getRoute();
    const rid = String(await kong.nginx.getVar('kong_request_id'));
    const r = this.redis;
    await Promise.all([
      withDeadline(r, r.mGet([`kta:{t:floor}:a`, `kta:{t:floor}:b`, `kta:{t:floor}:e:${rid}`])),
      this.script([
        'kta:{t:floor}:rate:requests',
        'kta:{t:floor}:rate:tokens',
        'kta:{t:floor}:leases',
      ]),
    ]);
    await this.script(['kta:{t:floor}:budget', 'kta:{t:floor}:budget-res']);
    const body = Buffer.isBuffer(raw) ? raw.toString('utf8') : String(raw);
    const at = body.indexOf('"messages":[') + 12;
    await kong.service.request.setHeaders({ 'x-tenant-id': 'acme', 'x-tenant-plan': 'pro' });
    await kong.service.request.setRawBody(body.slice(0, at) + PERSONA + body.slice(at));
    await kong.ctx.shared.set('tenant_context', TENANT_CONTEXT);
    await kong.log.setSerializeValue('tenant', { id: 'acme', plan: 'pro', source: 'consumer' });
    await kong.response.setHeaders({
      RateLimit: pad(40),
      'RateLimit-Policy': pad(50),
      'X-Service-Class': 'urgent',
    });
    await kong.ctx.shared.set('tenant_cache_status', 'miss');
    await kong.ctx.shared.set('kta_cache_capture', '262144');
    await kong.response.setHeader('X-Cache-Status', 'MISS');
    await kong.ctx.shared.set('token_meter', METER_STATE);
    await kong.service.request.setHeaders({ 'accept-encoding': 'identity' });
    await kong.response.setHeaders({ 'X-Budget-State': 'ok', 'X-Budget-Remaining-Usd': '49.36' });
  }

  async log(kong) {
    await kong.ctx.shared.get('tenant_context');
    await kong.ctx.shared.get('llm_usage');
    await kong.ctx.shared.get('kta_log_facts');
    await kong.response.getStatus();
    await kong.response.getSource();
    await kong.response.getHeaders();
    await kong.ctx.shared.get('kta_cache_answer');
    await kong.ctx.shared.get('token_meter');
    await kong.ctx.shared.get('kta_transform_usage');
    const r = this.redis;
    await Promise.all([
      this.script(['kta:{t:floor}:rate:tokens', 'kta:{t:floor}:leases']),
      this.script(['kta:{t:floor}:budget', 'kta:{t:floor}:ledger']),
      this.script(['kta:{q:floor}:seats']),
      withDeadline(
        r,
        r.set('kta:{t:floor}:cache:e', pad(600), { expiration: { type: 'EX', value: 5 } }),
      ),
    ]);
  }
}

module.exports = { Plugin, Schema: [], Version: '0.1.0', Priority: 1100 };
