/**
 * The noisy-neighbour bench's judge against the ideal scheduler (bench/lib/neighbour-runs.ts):
 * the figures a run is held to in docs/benchmarks.md are computed, not copied, so their
 * arithmetic is checked here on runs made up to give known answers.
 */
import test from 'ava';
import {
  busySeatShare,
  contendedIdealLatencies,
  handOffGaps,
  judgeAgainstIdeal,
  nextStartWaits,
  runsSection,
  type ModelResult,
  type Outcome,
  type RunsContext,
  type Sample,
} from '../../bench/lib/neighbour-runs';
import { percentile as percentileOf } from '../../bench/report';

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

/**
 * A seats run: FIFO's seats in lockstep (waits 0..99); the fair queue's own seats free every
 * 25 ms (waits 0..24), victims 100 ms alone and 120 ms under the flood, 98 % busy.
 */
const seatsRun = (wfq: Partial<Outcome>): ModelResult => ({
  model: 'seats',
  seconds: 20,
  ideal: null,
  chartFile: '',
  outcomes: [
    outcome('fifo', { waits: Array.from({ length: 100 }, (_, i) => i) }),
    outcome('wfq', {
      aloneSamples: samples(Array(10).fill(100)),
      victims: samples(Array(100).fill(120)),
      frees: Array.from({ length: 100 }, (_, i) => i % 25),
      util: 0.98,
      ...wfq,
    }),
  ],
});

/** The section's context, as bench/tenant-ratelimit.ts gives it. */
const context = (over: Partial<RunsContext> = {}): RunsContext => ({
  command: 'cmd',
  gateway: 'kong',
  seats: 4,
  serviceMs: 100,
  quotaRps: 40,
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
  t.deepEqual(j.met, { p99: true, median: true, util: true, idle: true });
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

  // With 230 ms answers, 97.5 % busy is 5.9 ms idle per hand-off: over the 5 ms the issue
  // allows, so the run misses though its utilisation holds.
  const long = judgeAgainstIdeal(
    {
      ...run,
      outcomes: [run.outcomes[0] as Outcome, { ...(run.outcomes[1] as Outcome), util: 0.975 }],
    },
    230,
  )[0];
  t.true(long?.met.util);
  t.false(long?.met.idle);
  t.false(long?.all);
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
  t.is(j?.met.idle, null);
  t.true(Number.isNaN(j?.idlePerHandOff));
  t.true(j?.all);
  t.deepEqual(judgeAgainstIdeal({ ...run, outcomes: run.outcomes.slice(1) }), []);

  const text = runsSection([{ load: 1.5, at: '2026-12-07T05:00', results: [run] }], context());
  t.regex(text, /### Against a rate quota/);
  t.regex(text, /fair queue: 1 of 1 runs met every goal\./);
  t.notRegex(text, /three or more in a row/);
});

test('against seats the ideal is the setup’s own next seat to free; FIFO’s is shown beside it', (t) => {
  const run = seatsRun({});
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
  const run = seatsRun({ victims, frees, freesFrom: from });
  const [j] = judgeAgainstIdeal(run);
  // Judged: from any instant (waits 0..99, p99 198); shown: from the arrivals (30 each).
  t.is(j?.idealP99, 198);
  t.is(j?.arrivalIdealP99, 130);
  t.is(j?.medianWait, 35);
});

test('the victims replayed together: two never take the same start', (t) => {
  // One start only: each of 10 replays serves exactly one of the two clients.
  const one = contendedIdealLatencies(
    samples([100]),
    [1000],
    {
      clients: 2,
      thinkMs: 100,
      randomThink: true,
    },
    10,
  );
  t.is(one.length, 10);

  // A start every 25 ms (a quota of 40/s) for 40 s, victims 100 ms alone.
  const starts = Array.from({ length: 1600 }, (_, i) => i * 25);
  const alone = samples([100]);
  const single = contendedIdealLatencies(alone, starts, {
    clients: 1,
    thinkMs: 100,
    randomThink: true,
  });
  const pair = contendedIdealLatencies(alone, starts, {
    clients: 2,
    thinkMs: 100,
    randomThink: true,
  });
  // Alone, a victim waits less than one start's gap; never more.
  t.true(single.length > 1000);
  t.true(single.every((x) => x >= 100 && x < 125));
  // Two victims: where one comes within a gap of the other it waits for the start after,
  // so some wait a gap or more, which counting each alone never gives.
  const late = pair.filter((x) => x >= 125);
  t.true(late.length > 0);
  t.true(pair.every((x) => x >= 100 && x < 150));
  // And it is the same figure every time (seeded).
  t.deepEqual(
    contendedIdealLatencies(alone, starts, { clients: 2, thinkMs: 100, randomThink: true }),
    pair,
  );
});

test('given the victims’ load, the judged ideal replays them; each alone is shown beside', (t) => {
  // A quota's starts every 25 ms for 40 s; FIFO's per-millisecond waits from the same.
  const startTimes = Array.from({ length: 1600 }, (_, i) => i * 25);
  const waits = Array.from({ length: 40000 - 25 }, (_, i) => (25 - (i % 25)) % 25);
  const run: ModelResult = {
    model: 'quota',
    seconds: 40,
    ideal: null,
    chartFile: '',
    outcomes: [
      outcome('fifo', { waits, startTimes }),
      outcome('wfq', {
        aloneSamples: samples(Array(50).fill(100)),
        victims: samples(Array(100).fill(128)),
        util: 0.98,
      }),
    ],
  };
  const load = { clients: 2, thinkMs: 100, randomThink: true };
  const [plain] = judgeAgainstIdeal(run);
  const [replayed] = judgeAgainstIdeal(run, 100, load);
  // Each alone: waits 0..24, p99 124. Replayed together, later: the pair's second waits more.
  t.is(plain?.idealP99, 124);
  t.true(Number.isNaN(plain?.eachAloneIdealP99));
  t.true((replayed?.idealP99 ?? 0) > 124);
  t.is(replayed?.eachAloneIdealP99, 124);
  t.is(
    replayed?.idealP99,
    percentileOf(contendedIdealLatencies(samples(Array(50).fill(100)), startTimes, load), 99),
  );
  // The section says which ideal it judged and shows the other.
  const text = runsSection(
    [{ load: 0.5, at: '2026-12-07T05:00', results: [run] }],
    context({ victims: load }),
  );
  t.regex(text, /each victim alone: 124/);
  t.regex(text, /replays the victims as the bench sends them \(2 clients/);
});

test('the hand-offs: each answer’s end to the start its seat gave next, shown for seats', (t) => {
  // Ends at 100, 101, 330; starts at 103 and 107 follow the first two, 331 the third; a start
  // before any end (the flood's first) is not a hand-off.
  t.deepEqual(handOffGaps([330, 100, 101], [5, 103, 107, 331]), [1, 3, 6]);
  // An end with no start after it (the window closed) is not counted.
  t.deepEqual(handOffGaps([100, 200], [104]), [4]);

  // Four seats of 100 ms, each start 2 ms after the end before it.
  const run = seatsRun({
    freeTimes: Array.from({ length: 40 }, (_, i) => 100 + i * 102),
    startTimes: Array.from({ length: 41 }, (_, i) => i * 102),
  });
  const [j] = judgeAgainstIdeal(run);
  t.deepEqual(j?.handOff, [2, 2, 2]);
  const text = runsSection([{ load: 0.5, at: '2026-12-07T05:00', results: [run] }], context());
  t.regex(text, /\| 2\.0 \/ 2\.0 \/ 2\.0 \|/);
  // Without the instants there is nothing to show.
  const [none] = judgeAgainstIdeal({
    ...run,
    outcomes: [
      run.outcomes[0] as Outcome,
      { ...(run.outcomes[1] as Outcome), freeTimes: undefined },
    ],
  });
  t.is(none?.handOff, null);
});

test('utilisation against seats: busy seats from every start and end the upstream recorded', (t) => {
  // Two seats over [0, 100): one busy throughout (started before the window), the other busy
  // 0–40, idle 40–50 (a hand-off), busy 50–100: (100 + 90) ÷ 200.
  t.is(busySeatShare([-20, -10, 50], [40, 150, 160], 0, 100, 2), 0.95);
  // A seat freed and taken again in the same millisecond stays busy.
  t.is(busySeatShare([0, 0, 50], [50], 0, 100, 2), 1);
  // An end with no start before it (a request of an earlier setup) does not go below zero,
  // and more starts than seats (the upstream queues beyond them) count the seats only.
  t.is(busySeatShare([10], [5, 200], 0, 100, 1), 0.9);
  t.is(busySeatShare([0, 0, 0], [], 0, 100, 2), 1);
  // Nothing started: an idle upstream; no window: no figure.
  t.is(busySeatShare([], [], 0, 100, 4), 0);
  t.true(Number.isNaN(busySeatShare([0], [10], 50, 50, 4)));
});

test('against seats the judged utilisation is the timeline’s; the sampled one is shown beside it', (t) => {
  const run = seatsRun({});
  const judged: ModelResult = {
    ...run,
    outcomes: [
      run.outcomes[0] as Outcome,
      { ...(run.outcomes[1] as Outcome), util: 0.983, sampledUtil: 0.961 },
    ],
  };
  const [j] = judgeAgainstIdeal(judged, 100);
  t.true(j?.met.util);
  t.is(j?.sampledUtil, 0.961);
  const text = runsSection([{ load: 0.1, at: '2026-12-07T20:00', results: [judged] }], context());
  t.regex(text, /98\.3 % ✓ \(sampled 96\.1 %\)/);
});
