/**
 * Request capture is tenant-checked like every other path (issue 23): tenant B, with its own
 * key, cannot get A's request captured, replayed or read — not by sending A's request id, not
 * by naming itself at replay time, not by a sealed value or an owner entry moved in Redis —
 * and every case has its positive control (A's capture is there, opens for A, and replays as A).
 * Runs on the gateway GATEWAY names.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { loadCapture } from '../../lib/capture/store';
import type { CaptureRecord } from '../../lib/capture/record';
import { closeAllRedis, createRedis, waitForRedis, type RedisClient } from '../../lib/redis/client';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { findCapture } from '../../scripts/replay/replay';
import { startCaptureDoor, type CaptureDoor } from '../helpers/capture-door';
import { Closers, ROOT, chat, eventually } from '../helpers/frontdoor';

const A = parseTenantId('capa');
const B = parseTenantId('capb');
const closers = new Closers();
let door: CaptureDoor | undefined;
let redis: RedisClient | undefined;
/** A's captured request: its id and the secret text only A sent. */
let aRid = '';
const aSecret = `a-secret-${randomBytes(6).toString('hex')}`;

function ready(): { door: CaptureDoor; redis: RedisClient } {
  if (!door || !redis) throw new Error('the capture door did not start');
  return { door, redis };
}

function captured(tenant: typeof A, rid: string): Promise<CaptureRecord> {
  const { door: d, redis: r } = ready();
  return eventually(async () => {
    const got = await loadCapture(r, d.keys, d.keyring, tenant, rid);
    return got.kind === 'found' ? got.record : undefined;
  }, 15_000);
}

test.before(async () => {
  door = await startCaptureDoor(closers.add);
  redis = createRedis({
    url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    commandTimeoutMs: 3000,
  });
  await waitForRedis(redis, 5000);
  const res = await door.call('capa', chat(`A asks: ${aSecret}`, { model: 'gpt-4o' }));
  if (res.status !== 200) throw new Error(`A's request failed: ${res.status} ${res.text}`);
  aRid = res.requestId;
  await captured(A, aRid);
});
test.after.always(async () => {
  await closers.closeAll();
  await closeAllRedis();
});

test.serial(
  'B sending A’s request id gets its own request id; A’s capture is untouched',
  async (t) => {
    const { door: d, redis: r } = ready();
    const bSecret = `b-text-${randomBytes(4).toString('hex')}`;
    const res = await d.call('capb', chat(`B asks: ${bSecret}`), [
      ['X-Kong-Request-Id', aRid],
      ['X-Request-Id', aRid],
    ]);
    t.is(res.status, 200, res.text);
    t.not(res.requestId, aRid, 'Kong names the request, not the client');
    // B's own capture (B opted in too): under B's id, in B's keyspace, with B's text only.
    const bRec = await captured(B, res.requestId);
    t.true(bRec.request.body?.includes(bSecret));
    t.false(JSON.stringify(bRec).includes(aSecret));
    // Positive control: A's capture is still A's request, A's answer.
    const aRec = await captured(A, aRid);
    t.true(aRec.request.body?.includes(aSecret));
    t.is(aRec.outcome.answer, `mock answer to: A asks: ${aSecret}`);
    t.false(JSON.stringify(aRec).includes(bSecret));
    t.is(await r.exists(d.keys.capture(B, aRid)), 0, 'nothing of B under A’s request id');
  },
);

test.serial(
  'replaying A’s request id as B finds nothing; as A (positive control) it opens',
  async (t) => {
    const { door: d, redis: r } = ready();
    const asB = await t.throwsAsync(findCapture(r, d.keys, d.keyring, aRid, 'capb'));
    t.regex(asB?.message ?? '', /no capture of request .* for tenant capb/);
    t.false(asB?.message.includes(aSecret) ?? true);
    const asA = await findCapture(r, d.keys, d.keyring, aRid, 'capa');
    t.true(asA.record.request.body?.includes(aSecret));
    const byOwner = await findCapture(r, d.keys, d.keyring, aRid);
    t.is(byOwner.record.tenant, 'capa', 'the signed owner entry names A');
  },
);

test.serial(
  'A’s sealed capture moved under B’s key, or its owner entry pointed at B, is refused',
  async (t) => {
    const { door: d, redis: r } = ready();
    const sealed = String(await r.get(d.keys.capture(A, aRid)));
    t.false(sealed.includes(aSecret), 'sealed at rest');
    const owner = String(await r.get(d.keys.captureOwner(aRid)));
    t.teardown(async () => {
      await r.del(d.keys.capture(B, aRid));
      await r.set(d.keys.captureOwner(aRid), owner, { expiration: { type: 'EX', value: 600 } });
    });
    await r.set(d.keys.capture(B, aRid), sealed, { expiration: { type: 'EX', value: 600 } });
    const moved = await t.throwsAsync(findCapture(r, d.keys, d.keyring, aRid, 'capb'));
    t.regex(moved?.message ?? '', /does not open for tenant capb/);
    await r.set(d.keys.captureOwner(aRid), owner.replace(/^capa /, 'capb '));
    const pointed = await t.throwsAsync(findCapture(r, d.keys, d.keyring, aRid));
    t.regex(pointed?.message ?? '', /not signed/);
  },
);

test.serial('the replay command run with B’s key cannot replay A’s request', async (t) => {
  const { door: d } = ready();
  const run = (args: string[], env: Record<string, string>) =>
    new Promise<{ code: number; out: string }>((resolve) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', path.join(ROOT, 'scripts', 'replay.ts'), ...args],
        { cwd: ROOT, env: { ...process.env, ...env }, timeout: 120_000 },
        (err, stdout, stderr) =>
          resolve({
            code: err ? Number((err as { code?: number }).code ?? 1) : 0,
            out: stdout + stderr,
          }),
      );
    });
  const before = d.upstream.received.length;
  const base = { KTA_CAPTURE_SECRET: d.secretHex, REPLAY_FRONTDOOR_URL: d.url };
  // B's operator names B and holds only B's key: nothing of A is found, nothing is sent.
  const asB = await run([aRid, '--tenant', 'capb', '--config', d.configFile], {
    ...base,
    REPLAY_API_KEY_CAPB: 'capb-key',
  });
  t.is(asB.code, 1, asB.out);
  t.false(asB.out.includes(aSecret));
  // Without --tenant the capture is A's, and the replay needs A's key: B's does not stand in.
  const keyless = await run([aRid, '--config', d.configFile, '--dir', path.join(ROOT, 'test')], {
    ...base,
    REPLAY_API_KEY_CAPB: 'capb-key',
  });
  t.is(keyless.code, 2, keyless.out);
  t.regex(keyless.out, /no API key for capa/);
  t.is(
    d.upstream.received.slice(before).filter((r) => r.rawBody.toString('utf8').includes(aSecret))
      .length,
    0,
    'nothing of A was sent upstream',
  );
  // Positive control: with A's key the replay runs, as A.
  const asA = await run([aRid, '--config', d.configFile], {
    ...base,
    REPLAY_API_KEY_CAPA: 'capa-key',
  });
  t.is(asA.code, 0, asA.out);
  const sent = d.upstream.received
    .slice(before)
    .filter((r) => r.rawBody.toString('utf8').includes(aSecret));
  t.is(sent.length, 1);
  t.is(sent[0]?.headers['x-tenant-id'], 'capa');
});
