// Issue 7 item 8: the harness must not grow with traffic. Runloop kept a RequestState (with
// the request body) in `stats` and a promise in `logWaiters` for every request, forever.
import test from 'ava';
import { startGateway } from '../../harness/index';
import { pluginServerDir } from '../helpers/frontdoor';
import { send, startUpstream } from './helpers';

test('the runloop keeps the last N request stats and no finished log waiter', async (t) => {
  const upstream = await startUpstream();
  t.teardown(() => upstream.close());
  const gw = await startGateway({
    maxRequestStats: 10,
    pluginServers: { 'tenant-probe': pluginServerDir('tenant-probe') },
    config: {
      _format_version: '3.0',
      services: [{ name: 's', url: upstream.url, routes: [{ name: 'r', paths: ['/r'] }] }],
      // tenant-probe has a log phase: every request schedules one.
      plugins: [{ name: 'tenant-probe', config: {} }],
    },
  });
  t.teardown(() => gw.close());
  const ids: string[] = [];
  for (let i = 0; i < 80; i++) {
    const r = await send(`${gw.url}/${i % 4 === 0 ? 'nowhere' : 'r'}`, {
      method: 'POST',
      body: 'x'.repeat(4096),
    });
    ids.push(String(r.headers['x-kong-request-id']));
  }
  await Promise.all(ids.map((id) => gw.logDone(id)));
  const sizes = gw.runloopSizes();
  t.is(sizes.stats, 10, 'only the newest 10 requests keep their stats');
  t.is(sizes.logWaiters, 0, 'every finished log phase let go of its waiter');
  t.truthy(gw.requestStats(ids[79] as string), 'the newest request still has its stats');
  t.is(gw.requestStats(ids[0] as string), undefined, 'the oldest was dropped');
  t.is(gw.requestStats(ids[79] as string)?.plugins['tenant-probe']?.log?.roundTrips, 1);
});
