/**
 * tenant-ratelimit's memory of a requests-bucket refusal (plugins/tenant-ratelimit/refusal-memo.ts):
 * kept only for a refusal by the requests bucket, until the time the bucket holds one request
 * again (from the script's own reply), for the same limits, the same tenant, within its bounds.
 */
import test from 'ava';
import {
  MAX_REMEMBER_MS,
  RefusalMemo,
  untilOneRequest,
} from '../../plugins/tenant-ratelimit/refusal-memo';
import type { AdmitDecision, TenantLimits } from '../../plugins/tenant-ratelimit/tenant-limits';
import { parseTenantId } from '../../lib/tenant/tenant-id';

const acme = parseTenantId('acme');
const globex = parseTenantId('globex');

/** 60 a minute, a burst of 3: one request per second, full again 3 s after empty. */
const LIMITS: TenantLimits = Object.freeze({
  requestsPerMinute: 60,
  requestBurst: 3,
  tokensPerMinute: 0,
  tokenBurst: 0,
  maxConcurrent: 0,
});

/** The script's reply for a requests bucket at `level` (< 1), as tenant-limits.ts decodes it. */
function refusedAt(level: number, over: Partial<AdmitDecision> = {}): AdmitDecision {
  const rate = 1; // per second
  return {
    allowed: false,
    refusedBy: 'requests',
    retryAfterMs: Math.ceil(((1 - level) * 1000) / rate),
    requestsLeft: Math.floor(level),
    tokensLeft: null,
    inFlight: 0,
    requestsResetMs: Math.ceil(((3 - level) * 1000) / rate),
    tokensResetMs: 0,
    ...over,
  };
}

test('the time until one request fits comes from the reply, never later than the bucket', (t) => {
  // level 0.25: 750 ms to one request; the reply says 2750 ms to full.
  t.is(untilOneRequest(LIMITS, refusedAt(0.25)), 749);
  t.is(untilOneRequest(LIMITS, refusedAt(0)), 999);
  t.is(untilOneRequest(LIMITS, refusedAt(0.25, { refusedBy: 'tokens' })), 0);
  t.is(untilOneRequest(LIMITS, refusedAt(0.25, { refusedBy: 'concurrency' })), 0);
  t.is(untilOneRequest({ ...LIMITS, requestsPerMinute: 0 }, refusedAt(0.25)), 0);
});

test('a requests refusal is answered again until then, its times counted down', (t) => {
  const memo = new RefusalMemo();
  memo.remember(acme, LIMITS, refusedAt(0.25), 10_000);
  const d = memo.recall(acme, LIMITS, 10_300);
  t.truthy(d);
  t.like(d, { allowed: false, refusedBy: 'requests', requestsLeft: 0 });
  t.is(d?.retryAfterMs, 450);
  t.is(d?.requestsResetMs, 2450);
  t.is(memo.recall(acme, LIMITS, 10_748)?.refusedBy, 'requests');
  t.is(memo.recall(acme, LIMITS, 10_749), null, 'Redis decides from the time a request fits');
  t.is(memo.size, 0, 'and the entry is gone');
});

test('only the tenant refused, only for the same request limits', (t) => {
  const memo = new RefusalMemo();
  memo.remember(acme, LIMITS, refusedAt(0), 0);
  t.is(memo.recall(globex, LIMITS, 10), null);
  t.is(memo.recall(acme, { ...LIMITS, requestBurst: 4 }, 10), null, 'another burst');
  t.is(memo.recall(acme, { ...LIMITS, requestsPerMinute: 120 }, 10), null, 'another rate');
  t.not(memo.recall(acme, { ...LIMITS, tokensPerMinute: 5 }, 10), null, 'tokens play no part');
});

test('refusals by tokens or concurrency are not remembered: a refund or a lease end frees them', (t) => {
  const memo = new RefusalMemo();
  memo.remember(acme, LIMITS, refusedAt(0.5, { refusedBy: 'tokens' }), 0);
  memo.remember(globex, LIMITS, refusedAt(0.5, { refusedBy: 'concurrency' }), 0);
  t.is(memo.size, 0);
});

test('an entry lasts at most MAX_REMEMBER_MS, however slow the bucket', (t) => {
  const memo = new RefusalMemo();
  const slow: TenantLimits = { ...LIMITS, requestsPerMinute: 1, requestBurst: 1 };
  // One a minute: the reply says 60 s to one request.
  memo.remember(acme, slow, refusedAt(0, { retryAfterMs: 60_000, requestsResetMs: 60_000 }), 0);
  t.not(memo.recall(acme, slow, MAX_REMEMBER_MS - 1), null);
  t.is(memo.recall(acme, slow, MAX_REMEMBER_MS), null);
});

test('at most maxTenants entries: the oldest goes', (t) => {
  const memo = new RefusalMemo(2);
  const c = parseTenantId('initech');
  memo.remember(acme, LIMITS, refusedAt(0), 0);
  memo.remember(globex, LIMITS, refusedAt(0), 0);
  memo.remember(c, LIMITS, refusedAt(0), 0);
  t.is(memo.size, 2);
  t.is(memo.recall(acme, LIMITS, 1), null);
  t.not(memo.recall(globex, LIMITS, 1), null);
  t.not(memo.recall(c, LIMITS, 1), null);
});
