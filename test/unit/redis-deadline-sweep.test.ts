/**
 * The Redis client's deadline (lib/redis/deadline-sweep.ts): one sweep per client, no timer per
 * call. The clock the sweep compares against is injected, so what is refused when is decided by
 * that clock, not by how fast this machine runs; the sweep's own timer only makes it look.
 * Against a real Redis (a paused one, node-redis's own timers): test/integration/redis-client.test.ts.
 */
import test from 'ava';
import { createHook } from 'node:async_hooks';
import { DeadlineSweep, RedisDeadlineError } from '../../lib/redis/deadline-sweep';

/** Long enough for a sweep of `tickMs` to have looked at least once more. */
const ticks = (sweep: DeadlineSweep, n = 3) =>
  new Promise((resolve) => setTimeout(resolve, sweep.tickMs * n + 20));

function fakeClock() {
  let now = 1000;
  return { now: () => now, set: (ms: number) => void (now = ms) };
}

const never = () => new Promise<never>(() => undefined);

/** Timeout objects created while `fn` runs (what setTimeout and AbortSignal.timeout make). */
async function timersMadeBy(fn: () => Promise<unknown>): Promise<number> {
  let made = 0;
  const hook = createHook({
    init(_id, type) {
      if (type === 'Timeout') made++;
    },
  });
  hook.enable();
  try {
    await fn();
  } finally {
    hook.disable();
  }
  return made;
}

test('a call with no answer is refused once the deadline has passed on the clock, not before', async (t) => {
  const clock = fakeClock();
  const sweep = new DeadlineSweep(40, clock.now);
  let outcome: unknown = 'pending';
  const call = sweep.race(never()).catch((e: unknown) => (outcome = e));
  await ticks(sweep);
  t.is(outcome, 'pending', 'no time has passed on the clock');
  clock.set(1000 + 38);
  await ticks(sweep);
  t.is(outcome, 'pending', '2 ms before its deadline');
  clock.set(1000 + 40);
  await call;
  t.true(outcome instanceof RedisDeadlineError);
  t.is((outcome as RedisDeadlineError).deadlineMs, 40);
  t.is(sweep.pending, 0);
});

test('only the calls that are due are refused, in the order they were made', async (t) => {
  const clock = fakeClock();
  const sweep = new DeadlineSweep(40, clock.now);
  const refused: string[] = [];
  const race = (name: string) => sweep.race(never()).catch(() => refused.push(name));
  void race('a');
  clock.set(1010);
  void race('b');
  clock.set(1020);
  void race('c');
  clock.set(1051); // a and b are due, c is not
  await ticks(sweep);
  t.deepEqual(refused, ['a', 'b']);
  t.is(sweep.pending, 1);
  clock.set(1060);
  await ticks(sweep);
  t.deepEqual(refused, ['a', 'b', 'c']);
});

test('answers and errors pass through as they are; settled calls leave nothing behind', async (t) => {
  const clock = fakeClock();
  const sweep = new DeadlineSweep(40, clock.now);
  t.is(await sweep.race(Promise.resolve('PONG')), 'PONG');
  const boom = new Error('WRONGTYPE');
  t.is(await t.throwsAsync(sweep.race(Promise.reject(boom))), boom);
  t.is(sweep.pending, 0);
  // A late answer after a refusal changes nothing.
  let answer: (v: string) => void = () => undefined;
  const late = sweep.race(new Promise<string>((r) => (answer = r)));
  clock.set(2000);
  await t.throwsAsync(late, { instanceOf: RedisDeadlineError });
  answer('late');
  t.is(sweep.pending, 0);
  // Nothing pending: the sweep stops looking (an idle plugin server wakes for nothing).
  await ticks(sweep);
  t.false(sweep.armed);
  void sweep.race(never()).catch(() => undefined);
  t.true(sweep.armed);
  clock.set(3000);
  await ticks(sweep);
  t.false(sweep.armed);
});

test("no timer is made per call (node-redis's per-command timeout makes one each)", async (t) => {
  const sweep = new DeadlineSweep(250);
  const calls = 500;
  const ours = await timersMadeBy(async () => {
    for (let i = 0; i < calls; i++) await sweep.race(Promise.resolve(i));
  });
  t.true(ours <= 1, `${ours} timers for ${calls} calls`);
  // Positive control: the hook sees the timer node-redis's `timeout` option made per command.
  const theirs = await timersMadeBy(async () => {
    for (let i = 0; i < calls; i++) AbortSignal.timeout(250);
  });
  t.is(theirs, calls);
});

test('a deadline must be positive', (t) => {
  t.throws(() => new DeadlineSweep(0), { instanceOf: RangeError });
  t.throws(() => new DeadlineSweep(Number.NaN), { instanceOf: RangeError });
});
