/**
 * The noisy-neighbour bench's judge against the ideal scheduler (bench/lib/neighbour-runs.ts):
 * the figures a run is held to in docs/benchmarks.md are computed, not copied, so their
 * arithmetic is checked here on runs made up to give known answers.
 */
import test from 'ava';
import {
  judgeAgainstIdeal,
  nextStartWaits,
  runsSection,
  type ModelResult,
  type Outcome,
  type Sample,
} from '../../bench/lib/neighbour-runs';

const samples = (ms: number[]): Sample[] =>
  ms.map((x, i) => ({
    ms: x,
    status: 200,
    at: i,
    id: String(i),
    wait: NaN,
    proxy: NaN,
    upstream: NaN,
  }));

const outcome = (kind: 'fifo' | 'wfq', over: Partial<Outcome>): Outcome => ({
  setup: { name: kind, route: kind, short: kind === 'fifo' ? 'plain FIFO' : 'fair queue', kind },
  alone: 100,
  flood: 0,
  ratio: 0,
  util: 1,
  other: 1,
  victims: [],
  aloneSamples: samples([100]),
  floodSamples: [],
  start: 0,
  waits: [],
  upstreamQueued: 0,
  ...over,
});

test('nextStartWaits: the wait from each millisecond to the next start', (t) => {
  // Starts before `from` (5) do not count: from 6 the wait falls 4..0 to 10, then 9..0 to 20.
  const w = nextStartWaits([10, 20, 5], 6, 21);
  t.deepEqual(w.slice(0, 5), [4, 3, 2, 1, 0]);
  t.deepEqual(w.slice(5), [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
  // Past the last start there is no next start: nothing counted.
  t.is(nextStartWaits([10], 0, 50).length, 11);
});

test('the ideal is the setup’s own victims alone plus the waits; ratios and goals follow', (t) => {
  // Waits uniform 0..99 ms, victims alone all 100 ms: the ideal's p99 is 198, its median 149.
  const waits = Array.from({ length: 100 }, (_, i) => i);
  const run: ModelResult = {
    model: 'seats',
    seconds: 20,
    ideal: null,
    chartFile: '',
    outcomes: [
      outcome('fifo', { waits }),
      outcome('wfq', {
        aloneSamples: samples(Array(50).fill(100)),
        // Median 160 (wait 60 against the ideal’s 49: 1.22×), p99 170 (0.86× of 198).
        victims: samples([...Array(50).fill(160), ...Array(49).fill(170), 205]),
        util: 0.98,
      }),
    ],
  };
  const [j] = judgeAgainstIdeal(run, 100);
  t.truthy(j);
  if (!j) return;
  t.is(j.idealP99, 198);
  t.is(j.idealMedianWait, 49);
  t.is(j.victimP99, 170);
  t.is(j.medianWait, 60);
  t.true(Math.abs(j.medianRatio - 60 / 49) < 1e-9);
  // 100 × 0.02 / 0.98: about 2 ms idle between one answer and the next request at each seat.
  t.true(Math.abs(j.idlePerHandOff - 2.0408) < 1e-3);
  t.deepEqual(j.met, { p99: true, median: true, util: true });
  t.true(j.all);

  // The same run at 96 % utilisation misses (and says so), as does a slow p99.
  const low = judgeAgainstIdeal(
    {
      ...run,
      outcomes: [run.outcomes[0] as Outcome, { ...(run.outcomes[1] as Outcome), util: 0.96 }],
    },
    100,
  )[0];
  t.false(low?.all);
  t.false(low?.met.util);
  const slow = judgeAgainstIdeal(
    {
      ...run,
      outcomes: [
        run.outcomes[0] as Outcome,
        { ...(run.outcomes[1] as Outcome), victims: samples(Array(100).fill(260)) },
      ],
    },
    100,
  )[0];
  t.false(slow?.met.p99);
  t.false(slow?.met.median);
});

test('a quota has no median goal and no idle per hand-off; no FIFO timeline, no judgement', (t) => {
  const waits = Array.from({ length: 25 }, (_, i) => i);
  const run: ModelResult = {
    model: 'quota',
    seconds: 40,
    ideal: null,
    chartFile: '',
    outcomes: [
      outcome('fifo', { waits }),
      outcome('wfq', { victims: samples(Array(100).fill(110)), util: 0.97 }),
    ],
  };
  const [j] = judgeAgainstIdeal(run);
  t.is(j?.met.median, null);
  t.true(Number.isNaN(j?.idlePerHandOff));
  t.true(j?.all);
  t.deepEqual(judgeAgainstIdeal({ ...run, outcomes: run.outcomes.slice(1) }), []);

  const text = runsSection([{ load: 1.5, at: '2026-12-07T05:00', results: [run] }], {
    command: 'cmd',
    gateway: 'kong',
    seats: 4,
    serviceMs: 100,
    quotaRps: 40,
  });
  t.regex(text, /### Against a rate quota/);
  t.regex(text, /fair queue: 1 of 1 runs met every goal\./);
  t.notRegex(text, /three or more in a row/);
});

test('against seats the ideal is the setup’s own next seat to free; FIFO’s is shown beside it', (t) => {
  const run: ModelResult = {
    model: 'seats',
    seconds: 20,
    ideal: null,
    chartFile: '',
    outcomes: [
      // FIFO's seats in lockstep: waits 0..99.
      outcome('fifo', { waits: Array.from({ length: 100 }, (_, i) => i) }),
      // The fair queue's own seats free every 25 ms: waits 0..24.
      outcome('wfq', {
        aloneSamples: samples(Array(10).fill(100)),
        victims: samples(Array(100).fill(120)),
        frees: Array.from({ length: 100 }, (_, i) => i % 25),
        util: 0.98,
      }),
    ],
  };
  const [j] = judgeAgainstIdeal(run);
  t.is(j?.idealP99, 124);
  t.is(j?.fifoIdealP99, 198);
  // 120 ≤ 1.05 × 124; but the median wait, 20, is over 1.5 × the ideal's 12.
  t.true(j?.met.p99);
  t.is(j?.idealMedianWait, 12);
  t.false(j?.met.median);
});

test('against seats the ideal from the victims’ real arrivals is shown beside the judged one', (t) => {
  // Seats free together every 100 ms from t = 1000; the victims always come 70 ms into a
  // step, so the next free seat is 30 ms away for each of them (from any instant: 0..99).
  const from = 1000;
  const frees = Array.from({ length: 1000 }, (_, i) => (100 - (i % 100)) % 100);
  const victims = Array.from({ length: 50 }, (_, k) => {
    const start = from + k * 200 + 70;
    return { ...samples([135])[0]!, at: start + 135 };
  });
  const run: ModelResult = {
    model: 'seats',
    seconds: 20,
    ideal: null,
    chartFile: '',
    outcomes: [
      outcome('fifo', { waits: Array.from({ length: 100 }, (_, i) => i) }),
      outcome('wfq', {
        aloneSamples: samples(Array(10).fill(100)),
        victims,
        frees,
        freesFrom: from,
        util: 0.98,
      }),
    ],
  };
  const [j] = judgeAgainstIdeal(run);
  // Judged: from any instant (waits 0..99, p99 198); shown: from the arrivals (30 each).
  t.is(j?.idealP99, 198);
  t.is(j?.arrivalIdealP99, 130);
  t.is(j?.medianWait, 35);
});
