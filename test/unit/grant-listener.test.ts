/**
 * tenant-ratelimit's grant listener when its subscriber cannot connect at first (a Redis
 * Cluster client gives up after one pass over its seeds, where a single-server client keeps
 * reconnecting by itself): it tries again with a capped backoff, and once subscribed hands an
 * announced grant to its waiter. Before, one failed start left announcements off for the life
 * of the process (only the poll admitted waiters).
 */
import test from 'ava';
import { EventEmitter } from 'node:events';
import type { RedisClient } from '../../lib/redis/client';
import { GrantListener } from '../../plugins/tenant-ratelimit/grant-listener';

class FakeSubscriber extends EventEmitter {
  onMessage: ((message: string) => void) | undefined;
  destroyed = false;
  constructor(private readonly fails: boolean) {
    super();
  }
  connect(): Promise<void> {
    return this.fails ? Promise.reject(new Error('connect ECONNREFUSED')) : Promise.resolve();
  }
  subscribe(_channel: string, onMessage: (message: string) => void): Promise<void> {
    this.onMessage = onMessage;
    return Promise.resolve();
  }
  destroy(): void {
    this.destroyed = true;
  }
}

test('a subscriber that cannot connect is tried again, then wakes the waiter of an announced grant', async (t) => {
  const made: FakeSubscriber[] = [];
  const client = {
    duplicate: () => {
      const sub = new FakeSubscriber(made.length < 2);
      made.push(sub);
      return sub;
    },
  } as unknown as RedisClient;
  const logs: string[] = [];
  const listener = new GrantListener(client, 'grants', (m) => logs.push(m));
  listener.start();
  listener.start(); // once per listener
  const deadline = Date.now() + 10_000;
  while (!made[2]?.onMessage && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.is(made.length, 3, 'two failed attempts, then a third that subscribed');
  t.true(made[0]?.destroyed && made[1]?.destroyed, 'failed subscribers are let go');
  t.is(logs.filter((l) => l.includes('not started')).length, 2);
  const waiting = listener.wait('ticket-7', 2000);
  made[2]?.onMessage?.('ticket-3,ticket-7');
  t.true(await waiting);
});
