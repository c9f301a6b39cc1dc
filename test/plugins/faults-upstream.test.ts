/**
 * The upstream (LLM) failing under load, kong.yml's chain (test/helpers/fault-door.ts): answering
 * 5xx, resetting the connection, hanging past the service's read_timeout, cutting an answer in
 * the middle; and a client that leaves mid-stream (the billing policy: docs/operations.md
 * "When a dependency fails"). Each fault lasts a few seconds with the load running, then the
 * upstream heals; checkAfterFault then holds the tenants' view to the docs: listed 5xx only, no
 * cross-tenant answer, the ledger exact, nothing held past its TTL, served again in time.
 */
import test from 'ava';
import { Closers } from '../helpers/frontdoor';
import {
  ask,
  checkAfterFault,
  holdFault,
  FAULT_TTLS,
  startFaultDoor,
  startLoad,
  type FaultDoor,
  type Outcome,
} from '../helpers/fault-door';
import type { FailureSpec } from '../../mock-upstream/index';
import { createClient } from 'redis';

let door: FaultDoor | undefined;
const closers = new Closers();
test.before(async () => {
  door = await startFaultDoor(closers.add);
});
test.after.always(() => closers.closeAll());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// The breaker (kong.yml: 5 failures) then opens: 503 at once; it lets a probe through after
// half_open_after_ms (the fault door: 2 s), so the door serves again within that and a probe.
const BREAKER_5XX = ['503 upstream_circuit_open', '503 upstream_circuit_half_open'];
const RECOVERY_MS = FAULT_TTLS.halfOpenMs + 6000;

async function drill(
  failure: FailureSpec,
  faultMs = 3000,
): Promise<{ d: FaultDoor; outcomes: Outcome[]; restoredAt: number }> {
  const d = door as FaultDoor;
  d.upstream.configure({ failure: null });
  const load = startLoad(d, 4);
  await sleep(1500);
  d.upstream.configure({ failure: { ...failure, pathPrefix: '/v1/chat' } });
  await holdFault(() => d.upstream.stats().injected >= 3, faultMs);
  d.upstream.configure({ failure: null });
  const restoredAt = Date.now();
  await sleep(RECOVERY_MS + 1000);
  const outcomes = await load.stop();
  return { d, outcomes, restoredAt };
}

test.serial('the upstream answers 5xx: passed through, then the breaker answers 503', async (t) => {
  const allowed = ['500 server_error', ...BREAKER_5XX];
  const { d, outcomes, restoredAt } = await drill({ mode: 'status', status: 500 });
  t.true(
    outcomes.some((o) => o.status === 500),
    'the upstream 500 reaches the client',
  );
  await checkAfterFault(t, d, outcomes, { allowed, restoredAt, recoveryBoundMs: RECOVERY_MS });
});

test.serial('the upstream resets the connection: 502 from Kong, then the breaker', async (t) => {
  const allowed = ['502 gateway_error', ...BREAKER_5XX];
  const { d, outcomes, restoredAt } = await drill({ mode: 'reset' });
  t.true(
    outcomes.some((o) => o.status === 502),
    'a reset is a 502',
  );
  await checkAfterFault(t, d, outcomes, { allowed, restoredAt, recoveryBoundMs: RECOVERY_MS });
});

test.serial('the upstream hangs: 504 at the read timeout, then the breaker', async (t) => {
  const allowed = ['504 gateway_error', ...BREAKER_5XX];
  const { d, outcomes, restoredAt } = await drill({ mode: 'timeout' }, 4000);
  t.true(
    outcomes.some((o) => o.status === 504),
    'a hang is a 504 at the read timeout',
  );
  const waited = Math.max(...outcomes.map((o) => o.endAt - o.sentAt));
  t.true(waited < FAULT_TTLS.readTimeoutMs + 3000, `a request waited ${waited} ms`);
  await checkAfterFault(t, d, outcomes, { allowed, restoredAt, recoveryBoundMs: RECOVERY_MS });
});

test.serial(
  'the upstream cuts answers mid-way: a cut stream billed as estimated, Kong’s 200 in place of a cut answer not billed, never cached',
  async (t) => {
    // A non-streamed answer cut before its end: 200 and Kong's error body on both gateways
    // (kong/init.lua Kong.response, res.truncated; docs/operations.md).
    const allowed: string[] = [];
    const { d, outcomes, restoredAt } = await drill({ mode: 'cut', afterEvents: 2 });
    const cut = outcomes.filter((o) => o.status === 200 && (!o.complete || o.code !== 'none'));
    t.log('cut:', [
      ...new Set(cut.map((o) => `stream ${o.stream} complete ${o.complete} ${o.code}`)),
    ]);
    t.true(
      cut.length > 0,
      `answers were cut: ${JSON.stringify(outcomes.filter((o) => o.status !== 200 || !o.complete || o.error).slice(0, 5))}`,
    );
    t.deepEqual(
      outcomes
        .filter((o) => o.cache === 'HIT' && (!o.complete || o.code !== 'none'))
        .map((o) => `${o.rid} ${o.code}`),
      [],
      'a cut answer replayed from the cache',
    );
    await checkAfterFault(t, d, outcomes, {
      allowed,
      restoredAt,
      recoveryBoundMs: RECOVERY_MS,
      incompleteAllowed: true,
    });
    // A cut stream is billed as estimated (the client got part of it; no usage reached the
    // meter); Kong's error body in place of a cut buffered answer is not billed (no answer).
    const redis = createClient({ url: d.redisUrl });
    await redis.connect();
    t.teardown(() => redis.close());
    const flags: string[] = [];
    for (const tenant of [d.A, d.B]) {
      for await (const keys of redis.scanIterator({
        MATCH: `${d.namespace}tm:{t:${tenant.id}}:ledger:*`,
      })) {
        for (const key of keys)
          for (const e of (await redis.xRange(key, '-', '+')) ?? [])
            if (e && cut.some((o) => o.rid === (e.message as Record<string, string>).rid))
              flags.push(
                `${(e.message as Record<string, string>).rid} ${(e.message as Record<string, string>).estimated ?? '?'}`,
              );
      }
    }
    const streamed = cut.filter((o) => o.code === 'none');
    const kongBodies = cut.filter((o) => o.code !== 'none');
    t.log(
      `cut: ${streamed.length} streams (or bodies short of their length), ${kongBodies.length} Kong error bodies`,
    );
    // Controls: both kinds of cut happened (the load mixes streamed and cacheable answers,
    // which tenant-cache buffers on a miss).
    t.true(streamed.length > 0, 'a stream was cut');
    t.true(kongBodies.length > 0, 'a buffered answer was cut');
    t.deepEqual(
      flags.map((f) => f.split(' ')[0]).sort(),
      streamed.map((o) => o.rid).sort(),
      'one ledger entry per cut stream, none for a Kong error body',
    );
    t.true(
      flags.every((f) => f.endsWith(' 1')),
      `cut answers billed: ${flags.join(',')}`,
    );
  },
);

test.serial(
  'a client that leaves mid-stream pays the estimate: prompt and the completion bound, once',
  async (t) => {
    const d = door as FaultDoor;
    d.upstream.configure({ failure: null, streamChunkDelayMs: 300 });
    t.teardown(() => d.upstream.configure({ streamChunkDelayMs: 0 }));
    const left = await Promise.all(
      [d.A, d.B, d.A, d.B].map((tenant, i) =>
        ask(d, tenant, `a long story, please ${i} ${Date.now()}`, true, {
          abortAfterFirstChunk: true,
        }),
      ),
    );
    t.deepEqual(
      left.map((o) => [o.status, o.complete, typeof o.rid]),
      left.map(() => [200, false, 'string']),
      JSON.stringify(left),
    );
    const redis = createClient({ url: d.redisUrl });
    await redis.connect();
    t.teardown(() => redis.close());
    const entries = new Map<string, Record<string, string>[]>();
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      entries.clear();
      for (const tenant of [d.A, d.B]) {
        for await (const keys of redis.scanIterator({
          MATCH: `${d.namespace}tm:{t:${tenant.id}}:ledger:*`,
        })) {
          for (const key of keys)
            for (const e of (await redis.xRange(key, '-', '+')) ?? []) {
              const f = (e?.message ?? {}) as Record<string, string>;
              const rid = f.rid ?? '';
              if (left.some((o) => o.rid === rid))
                entries.set(rid, [...(entries.get(rid) ?? []), f]);
            }
        }
      }
      if (entries.size === left.length) break;
      await sleep(250);
    }
    t.is(entries.size, left.length, 'every stream the client left is in the ledger');
    for (const o of left) {
      const e = entries.get(o.rid as string) ?? [];
      t.is(e.length, 1, 'settled once');
      const f = e[0] ?? {};
      // What the upstream was asked to generate at most: the bound token-meter reserved.
      const sent = d.upstream.received.find((r) => r.headers['x-kong-request-id'] === o.rid);
      const body = (sent?.json ?? {}) as { max_tokens?: number; max_completion_tokens?: number };
      const bound = body.max_completion_tokens ?? body.max_tokens;
      t.log({
        rid: o.rid,
        estimated: f.estimated,
        prompt: f.prompt,
        completion: f.completion,
        bound,
      });
      t.is(f.estimated, '1');
      t.is(f.estimate_basis, 'prompt=tokenizer;completion=bound', 'the estimate says its basis');
      t.is(f.stream, '1');
      t.is(Number(f.completion), Number(bound), 'the completion bound is billed');
      t.true(Number(f.prompt) > 0);
    }
  },
);
