/**
 * What request capture costs in PDK exchanges, counted by the harness (the real Kong exposes no
 * such count; the plugin server issues the same calls whichever gateway answers): for a tenant
 * that opted in, one call more on the request path (tenant-auth's access: the capture flag) and
 * two in token-meter's log, after the response (serialize, the answer); for a tenant of the same
 * plan that opted out, not one. Both requests have the same shape, plan and policy.
 */
import test from 'ava';
import { startCaptureDoor } from '../helpers/capture-door';
import { Closers, chat } from '../helpers/frontdoor';

const closers = new Closers();
test.after.always(() => closers.closeAll());

test('capture: +1 PDK call on the request path for an opted-in tenant, 0 otherwise', async (t) => {
  const door = await startCaptureDoor(closers.add);
  const body = chat('same shape', { model: 'gpt-4o' });
  // Warm up both tenants (first-request work such as connecting to Redis is not counted).
  await door.call('capa', body);
  await door.call('cape', body);
  const opted = await door.call('capa', body);
  const optedOut = await door.call('cape', body);
  t.is(opted.status, 200);
  t.is(optedOut.status, 200);
  await door.gateway.logDone(opted.requestId);
  await door.gateway.logDone(optedOut.requestId);
  const stats = (rid: string) => {
    const s = door.gateway.requestStats(rid);
    if (!s) throw new Error(`no stats for ${rid}`);
    return s;
  };
  const calls = (rid: string, plugin: string, phase: string) =>
    stats(rid).plugins[plugin]?.[phase]?.pdkCalls ?? {};
  const total = (m: Record<string, number>) => Object.values(m).reduce((a, b) => a + b, 0);
  const a = opted.requestId;
  const b = optedOut.requestId;

  const authA = calls(a, 'tenant-auth', 'access');
  const authB = calls(b, 'tenant-auth', 'access');
  t.is(total(authA), total(authB) + 1, JSON.stringify({ authA, authB }));
  t.is((authA['kong.ctx.shared.set'] ?? 0) - (authB['kong.ctx.shared.set'] ?? 0), 1);
  t.is(total(calls(a, 'token-meter', 'access')), total(calls(b, 'token-meter', 'access')));
  const logA = calls(a, 'token-meter', 'log');
  const logB = calls(b, 'token-meter', 'log');
  t.is(total(logA), total(logB) + 2, JSON.stringify({ logA, logB }));
  t.is((logA['kong.log.serialize'] ?? 0) - (logB['kong.log.serialize'] ?? 0), 1);
  t.deepEqual(stats(a).pdkErrors, []);
  t.log(
    `exchanges per request: opted in ${stats(a).totalRoundTrips}, opted out ${stats(b).totalRoundTrips}; ` +
      `tenant-auth access ${total(authA)} vs ${total(authB)}, token-meter log ${total(logA)} vs ${total(logB)}`,
  );
});
