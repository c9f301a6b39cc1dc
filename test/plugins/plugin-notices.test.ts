/**
 * A plugin server's notices outside any request (here: its Redis is unreachable) reach the
 * gateway's log at `warn`, not only the plugin server's stderr. Kong 3.9 logs a plugin server's
 * stderr at INFO, under its default `log_level = notice` (and kong-runner's): without
 * lib/pdk/notices.ts the line below is never in Kong's error log. On the harness the same
 * line arrives through its PDK log (the gateway's logger).
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import type { KongGateway } from '../../kong-runner/index';
import { Closers, send, startFrontDoor, type FrontDoor } from '../helpers/frontdoor';
import {
  AUTH_PLANS,
  DEAD_REDIS_URL,
  RATELIMIT_CONSUMERS,
  chatBody,
} from '../helpers/ratelimit-door';
import { closeAllRedis } from '../../lib/redis/client';

const run = randomBytes(4).toString('hex');
const closers = new Closers();
const said: string[] = [];
let door: FrontDoor;

test.before(async () => {
  door = await startFrontDoor(
    closers.add,
    (upstreamUrl) => ({
      _format_version: '3.0',
      services: [
        {
          name: 'llm',
          url: upstreamUrl,
          routes: [{ name: 'ai', paths: ['/ai'], strip_path: true }],
        },
      ],
      plugins: [
        { name: 'key-auth', route: 'ai', config: { hide_credentials: true } },
        { name: 'tenant-auth', route: 'ai', config: { plans: AUTH_PLANS, metrics_port: 0 } },
        {
          name: 'tenant-ratelimit',
          route: 'ai',
          config: {
            redis: { url: DEAD_REDIS_URL, key_namespace: `notice-${run}`, timeout_ms: 100 },
            on_redis_unavailable: 'local',
            metrics_port: 0,
          },
        },
      ],
      consumers: RATELIMIT_CONSUMERS,
    }),
    { logger: (line) => said.push(line) },
  );
});
test.after.always(async () => {
  await closers.closeAll();
  await closeAllRedis();
});

function gatewayLog(): string {
  const g = door.gateway as Partial<KongGateway>;
  return typeof g.errorLog === 'function' ? g.errorLog() : said.join('\n');
}

test("the plugin server's Redis trouble is in the gateway's log at warn, after a request's log phase", async (t) => {
  const unavailable =
    /\[redis\] redis:\/\/127\.0\.0\.1:1\/? unavailable, retrying in the background/;
  // Requests keep coming (each one's log phase hands over what was noticed since the last).
  let found = false;
  for (let i = 0; i < 20 && !found; i++) {
    const res = await send(`${door.url}/ai/v1/chat/completions`, {
      headers: [['apikey', 'acme-key']],
      body: chatBody('hello'),
    });
    t.true(res.status === 200 || res.status === 429, `status ${res.status}`);
    await new Promise((r) => setTimeout(r, 200));
    found = unavailable.test(gatewayLog());
  }
  t.true(found, 'the Redis notice reached the gateway log');
  const g = door.gateway as Partial<KongGateway>;
  if (typeof g.errorLog === 'function') {
    // Kong's own line for a PDK kong.log.warn: at warn, so a default log_level keeps it.
    const line = g
      .errorLog()
      .split('\n')
      .find((l) => unavailable.test(l));
    t.regex(line ?? '', /\[warn\]/);
  }
});
