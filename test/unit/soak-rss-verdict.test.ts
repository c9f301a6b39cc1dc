/**
 * The soak's RSS verdict (test/helpers/soak-watch.ts): floors judged from each process's own
 * warm-up, so the sawtooth of collections and a worker first used half-way through pass, and a
 * lifted floor fails, whenever it starts.
 */
import test from 'ava';
import { RssBands } from '../helpers/soak-watch';

// No such process: its ready RSS reads as unknown, and samples are given by hand.
const PID = 2 ** 30;

/** A run of 100 samples, 1 s apart, load for 90 (stretches as bench/soak.ts enters them), idle 10. */
function run(mbAt: (i: number) => number): RssBands {
  const r = new RssBands([{ pid: PID, label: 'p', judged: true }]);
  for (let i = 0; i < 100; i++) {
    const t = 1_000_000 + i * 1000;
    const stretch = i >= 90 ? 3 : i >= 50 ? 2 : i >= 9 ? 1 : 0;
    if (stretch !== r.stretch) r.stretch = stretch;
    r.record(PID, mbAt(i), t);
  }
  return r;
}

test('a sawtooth whose ceiling rises while its floor stays is flat', (t) => {
  // Floor 270, peaks 330 in the first half, 380 in the second: collections ran later.
  const v = run((i) => (i % 10 === 9 ? (i < 50 ? 330 : 380) : 270 + (i % 10) * 2))?.verdict(PID);
  t.truthy(v);
  t.true(v?.flat);
  t.true((v?.ceilingRise ?? 0) > 32, 'the ceiling did rise: only the floor is judged');
});

test('a floor that climbs through the load is a leak', (t) => {
  const v = run((i) => 270 + i * 1.5 + (i % 5) * 3).verdict(PID);
  t.false(v?.flat);
  t.true((v?.floorRise ?? 0) > 32);
});

test('a worker first used half-way warms up then: its climb to the plateau is not a leak', (t) => {
  // Idle at 92 until 55 %, then climbs to 150 within a few samples and stays.
  const v = run((i) => (i < 55 ? 92 : Math.min(150, 92 + (i - 55) * 15))).verdict(PID);
  t.true(v?.flat);
  t.true((v?.from ?? 0) > 0.6, 'judged from its own warm-up, not the load`s');
});

test('a late worker that keeps climbing after its warm-up is a leak', (t) => {
  const v = run((i) => (i < 40 ? 92 : 92 + (i - 40) * 3)).verdict(PID);
  t.false(v?.flat);
});

test('an idle pause that stays above the run is a leak', (t) => {
  // Flat during the load, then the floor jumps while idle.
  const v = run((i) => (i >= 90 ? 330 : 270 + (i % 4) * 5)).verdict(PID);
  t.false(v?.flat);
  t.true((v?.idleFloorRise ?? 0) > 32);
});

test('a process seen too briefly is not judged, and counts as not flat', (t) => {
  const r = new RssBands([{ pid: PID, label: 'p', judged: true }]);
  r.record(PID, 100, 1000);
  r.record(PID, 100, 2000);
  t.is(r.verdict(PID), undefined);
  t.deepEqual(r.growing().length, 1);
});
