/**
 * The noisy neighbour judged against the ideal scheduler, run after run (issue 19's goals).
 *
 * bench/tenant-ratelimit.ts measures, in each run, the fair queue's victims under a flood and
 * the upstream's timeline. The ideal scheduler is built per fair-queue setup: that setup's
 * victims alone, plus the wait a victim arriving at any millisecond of the flood would have
 * had with no hand-off time and no pre-emption:
 * - against seats, from any millisecond of the flood until the next seat that freed on that
 *   setup's own run (the issue's "the victim takes the next seat that frees"; the upstream's
 *   `GET /__mock/ends`). Beside it, shown, not judged: the same from the instants the victims
 *   really came, and the ideal built on plain FIFO's saturated start times, as before. Seats
 *   run in step (every seat starting together at the flood's onset, then freeing together each
 *   service time); a victim with a fixed think time comes back at the same phase of that step
 *   every time (seen at 230 ms: a median wait of 130 ms for every victim against 66 ms from any
 *   instant), so the runs mode draws the victims' think time at random
 *   (bench/tenant-ratelimit.ts `BENCH_VICTIM_THINK`);
 * - against a quota, until the next start the quota granted while plain FIFO kept it saturated
 *   (the quota's grants do not depend on the gateway).
 * Here each run is judged on its own:
 * - victim p99 under the flood ≤ 1.05 × the ideal's p99;
 * - against seats, the victims' median wait ≤ 1.5 × the ideal's: (median under the flood −
 *   median alone) against (the ideal's median − the same median alone);
 * - utilisation ≥ 97 % (seats: mean busy seats ÷ seats, from every start and end the upstream
 *   recorded, `busySeatShare`; quota: starts ÷ the quota), and, against
 *   seats, the upstream's idle time per hand-off that utilisation implies, service × (1 − u) ÷ u,
 *   ≤ 5 ms (the issue's words; both are held: with 230 ms answers 97 % alone allows 7.1 ms).
 * Pure: no I/O, so that the arithmetic is tested alone (test/unit/bench-neighbour-runs.test.ts).
 */
import { percentile, table } from '../report';

export type Model = 'quota' | 'seats';

export interface Sample {
  ms: number;
  status: number;
  at: number;
  id: string;
  /** tenant-ratelimit's X-Queue-Wait-Ms (NaN without it). */
  wait: number;
  /** Kong's X-Kong-Proxy-Latency: its time before proxying, the plugins' access included. */
  proxy: number;
  /** Kong's X-Kong-Upstream-Latency: from proxying to the upstream's first byte. */
  upstream: number;
}

export interface Setup {
  name: string;
  route: string;
  /** Short name in the chart and the summary. */
  short: string;
  color?: string;
  kind: 'fifo' | 'rl' | 'wfq';
}

export interface Outcome {
  setup: Setup;
  alone: number;
  flood: number;
  ratio: number;
  /**
   * The goal's utilisation: starts ÷ quota (quota), busy seats ÷ seats from the upstream's
   * timeline (seats, `busySeatShare`).
   */
  util: number;
  /** Seats: busy seats ÷ seats as sampled every 25 ms (shown beside, not judged). */
  sampledUtil?: number;
  /** Beside it: completed ÷ capacity (seats), or busy seats ÷ 4 (quota: in service, for info). */
  other: number;
  victims: Sample[];
  aloneSamples: Sample[];
  floodSamples: Sample[];
  start: number;
  /** Waits for the next start the upstream gave during this flood (ideal scheduler). */
  waits: number[];
  /**
   * Seats: the wait for the next seat that freed during this flood, on this setup's own
   * upstream timeline (empty for a quota, or when the upstream does not say).
   */
  frees?: number[];
  /** When `frees[0]` was (ms since the epoch): `frees[i]` is the wait from `freesFrom + i`. */
  freesFrom?: number;
  /**
   * The same timelines as instants, ms from the window's start, every one kept (two seats that
   * free in the same millisecond are two instants; the per-millisecond waits show one):
   * the upstream's starts (`waits`) and, for seats, its frees (`frees`).
   */
  startTimes?: number[];
  freeTimes?: number[];
  /** Mean requests waiting at the upstream during the flood. */
  upstreamQueued: number;
}

export interface ModelResult {
  model: Model;
  seconds: number;
  outcomes: Outcome[];
  ideal: { p99: number; alone: number; ratio: number; util: number; waitP99: number } | null;
  chartFile: string;
}

/** Issue 19's goals against the ideal scheduler. */
export const GOALS = { p99: 1.05, medianWait: 1.5, util: 0.97, idleMs: 5 } as const;

export const sorted = (xs: readonly number[]): number[] => [...xs].sort((a, b) => a - b);
const okMs = (s: readonly Sample[]) => s.filter((x) => x.status === 200).map((x) => x.ms);

/**
 * The wait for the next start the upstream gave, from every millisecond of [from, to): what
 * a victim arriving then would wait under an ideal scheduler that hands it the very next start
 * (the next seat to free, the next start of the quota) with no hand-off time.
 */
export function nextStartWaits(starts: readonly number[], from: number, to: number): number[] {
  const s = sorted(starts.filter((x) => x >= from));
  const waits: number[] = [];
  let i = 0;
  for (let t = from; t < to; t++) {
    while (i < s.length && (s[i] ?? 0) < t) i++;
    if (i >= s.length) break;
    waits.push((s[i] ?? t) - t);
  }
  return waits;
}

/** alone + wait over every pair (the two independent): the ideal scheduler's latencies. */
function idealLatencies(alone: readonly Sample[], waits: readonly number[]): number[] {
  const a = okMs(alone);
  const step = Math.max(1, Math.floor(waits.length / 2000));
  const sums: number[] = [];
  for (let j = 0; j < waits.length; j += step) for (const x of a) sums.push(x + (waits[j] ?? 0));
  return sorted(sums);
}

/** The victims as the bench sends them: closed-loop clients, each thinking between requests. */
export interface VictimLoad {
  /** Clients sending at once (B and C: 2). */
  clients: number;
  /** Think time after each answer, ms (the mean when random). */
  thinkMs: number;
  /** Drawn uniformly from 0 to 2 × thinkMs (BENCH_VICTIM_THINK=random), else fixed. */
  randomThink: boolean;
}

/** A small seeded generator (mulberry32), so that a judgement is the same every time it is made. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The ideal scheduler with the victims as they really come: the bench's victim clients
 * (closed loop, the same think times) replayed against the upstream's start instants of the
 * window, each arrival taking the next start no earlier victim has taken (no hand-off, no
 * pre-emption; the flood always yields). Latency = that wait + a victim's latency alone drawn
 * at random. Two victims can never take the same start: where one comes just after the other,
 * it waits for the start after, as under any scheduler. `idealLatencies` counts each victim
 * as if it were the only one, which no scheduler can give two victims at once. Replayed
 * `rounds` times from random offsets, seeded, so that the same run gives the same figure.
 */
export function contendedIdealLatencies(
  alone: readonly Sample[],
  starts: readonly number[],
  load: VictimLoad,
  rounds = 200,
  seed = 19,
): number[] {
  const a = okMs(alone);
  const s = sorted(starts);
  if (a.length === 0 || s.length === 0) return [];
  const end = s[s.length - 1] ?? 0;
  const random = rng(seed);
  const think = () => (load.randomThink ? random() * 2 * load.thinkMs : load.thinkMs);
  const firstAtOrAfter = (t: number): number => {
    let lo = 0;
    let hi = s.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((s[mid] ?? 0) < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  const out: number[] = [];
  for (let r = 0; r < rounds; r++) {
    // Each client's first arrival anywhere in its first cycle.
    const cycle = (a[Math.floor(random() * a.length)] ?? 0) + 2 * load.thinkMs;
    const next = Array.from({ length: load.clients }, () => random() * cycle);
    let taken = 0; // starts below this index are taken (claims only move forward: see below)
    for (;;) {
      // The earliest arrival next; arrivals in time order take the first start not taken, so
      // the starts taken rise with them and one index remembers them all.
      let c = 0;
      for (let k = 1; k < next.length; k++) if ((next[k] ?? 0) < (next[c] ?? 0)) c = k;
      const at = next[c] ?? 0;
      if (at > end) break;
      const i = Math.max(taken, firstAtOrAfter(at));
      if (i >= s.length) break;
      taken = i + 1;
      const latency = (s[i] ?? at) - at + (a[Math.floor(random() * a.length)] ?? 0);
      out.push(latency);
      next[c] = at + latency + think();
    }
  }
  return sorted(out);
}

/**
 * The upstream's hand-offs, measured: from each end of an answer to the start the seat it freed
 * gave next (ends and starts matched in time order: while the seats stay busy every end is
 * followed by one start). Its mean is the idle per hand-off the utilisation implies, seen
 * directly; its tail is the hand-offs the gateway was slow to make.
 */
export function handOffGaps(ends: readonly number[], starts: readonly number[]): number[] {
  const e = sorted(ends);
  const s = sorted(starts);
  const out: number[] = [];
  let i = 0;
  for (const end of e) {
    while (i < s.length && (s[i] ?? 0) < end) i++;
    if (i >= s.length) break;
    out.push((s[i] ?? end) - end);
    i++;
  }
  return sorted(out);
}

/**
 * Mean busy seats ÷ seats over [from, until), from every start and end the upstream recorded
 * (`GET /__mock/starts`, `/__mock/ends`): exact, where sampling the upstream's in-flight count
 * every 25 ms is not. Those samples are answered in the upstream's event loop after the timers
 * that end answers and before the request a freed seat gives next, so whenever the loaded
 * machine delays that process its samples land in hand-offs: on 2026-12-07 they read 97.6 %
 * twice where the timeline gave 98.3 % and 98.5 %, and 0.2–0.3 points high in two other runs.
 * An end with no start before it (a request of an earlier setup) is not counted; the count is
 * held within 0..seats.
 */
export function busySeatShare(
  starts: readonly number[],
  ends: readonly number[],
  from: number,
  until: number,
  seats: number,
): number {
  if (!(until > from) || seats <= 0) return NaN;
  // At one instant, ends before starts: a seat freed and taken again in the same ms was busy.
  const events = [...starts.map((t) => [t, 1] as const), ...ends.map((t) => [t, -1] as const)].sort(
    (a, b) => a[0] - b[0] || a[1] - b[1],
  );
  let busy = 0;
  let last = -Infinity;
  let busyMs = 0;
  for (const [t, step] of events) {
    const a = Math.max(last, from);
    const b = Math.min(t, until);
    if (b > a) busyMs += busy * (b - a);
    busy = Math.min(seats, Math.max(0, busy + step));
    last = t;
  }
  const a = Math.max(last, from);
  if (until > a) busyMs += busy * (until - a);
  return busyMs / (seats * (until - from));
}

/** The wait to the next free seat from each victim's arrival (its start), where the timeline has it. */
function waitsAtArrivals(o: Outcome, frees: readonly number[], from: number): number[] {
  if (!Number.isFinite(from)) return [];
  const out: number[] = [];
  for (const v of o.victims) {
    if (v.status !== 200) continue;
    const i = Math.round(v.at - v.ms - from);
    const w = i >= 0 && i < frees.length ? frees[i] : undefined;
    if (w !== undefined) out.push(w);
  }
  return out;
}

/** The ideal scheduler's p99 (see idealLatencies). */
export function idealP99(alone: readonly Sample[], waits: readonly number[]): number {
  return percentile(idealLatencies(alone, waits), 99);
}

export interface Judgement {
  setup: string;
  victimP99: number;
  idealP99: number;
  p99Ratio: number;
  /** Median under the flood − median alone. */
  medianWait: number;
  idealMedianWait: number;
  /** NaN when the ideal's median wait is under 1 ms (no ratio to speak of). */
  medianRatio: number;
  /** Seats: the ideal's p99 on plain FIFO's start times (shown, not judged); NaN for a quota. */
  fifoIdealP99: number;
  /** Seats: the ideal's p99 from the instants the victims came (shown, not judged); NaN else. */
  arrivalIdealP99: number;
  /**
   * When the judged ideal replays the victims together: the ideal counting each victim as the
   * only one (the earlier sections' judged ideal; shown, not judged). NaN otherwise.
   */
  eachAloneIdealP99: number;
  util: number;
  /** Seats: the utilisation sampled every 25 ms (shown beside, not judged); NaN else. */
  sampledUtil: number;
  /** Seats only: the upstream's idle ms per hand-off the utilisation implies (NaN for a quota). */
  idlePerHandOff: number;
  victims: number;
  /** Under the flood, p50 / p99 ms: the fair queue's wait, the gateway outside it, the upstream. */
  parts: { queue: [number, number]; gateway: [number, number]; upstream: [number, number] };
  /** Seats: the measured hand-offs (handOffGaps), p50 / p90 / p99 ms; null without the instants. */
  handOff: [number, number, number] | null;
  /** `idle`: seats only (null for a quota), the issue's "upstream idle ≤ 5 ms per hand-off". */
  met: { p99: boolean; median: boolean | null; util: boolean; idle: boolean | null };
  all: boolean;
  summary: string;
}

/**
 * Each fair-queue setup of one run against the ideal scheduler built from that run's FIFO
 * timeline and the setup's own victims alone. Empty when the run has no FIFO timeline.
 */
export function judgeAgainstIdeal(
  r: ModelResult,
  serviceMs = 100,
  victimLoad?: VictimLoad,
): Judgement[] {
  const fifo = r.outcomes.find((o) => o.setup.kind === 'fifo');
  if (!fifo || fifo.waits.length === 0) return [];
  return r.outcomes
    .filter((o) => o.setup.kind === 'wfq')
    .map((o): Judgement => {
      const frees = r.model === 'seats' && o.frees !== undefined ? o.frees : [];
      const own = frees.length > 0;
      // Seats: the wait to the next seat that freed on this setup's own run, from any instant.
      const eachAlone = idealLatencies(o.aloneSamples, own ? frees : fifo.waits);
      // With the victims' load and the timeline's instants: the victims replayed against it,
      // two never taking the same start (contendedIdealLatencies); that is the one judged.
      const instants = own ? o.freeTimes : r.model === 'seats' ? undefined : fifo.startTimes;
      const contended =
        victimLoad && instants && instants.length > 0
          ? contendedIdealLatencies(o.aloneSamples, instants, victimLoad)
          : [];
      const ideal = contended.length > 0 ? contended : eachAlone;
      const eachAloneIdealP99 = contended.length > 0 ? percentile(eachAlone, 99) : NaN;
      // Beside it: from the instants the victims really came (their requests' starts).
      const arrivalWaits = own ? waitsAtArrivals(o, frees, o.freesFrom ?? NaN) : [];
      const arrivalIdealP99 =
        arrivalWaits.length > 0
          ? percentile(idealLatencies(o.aloneSamples, arrivalWaits), 99)
          : NaN;
      const fifoIdealP99 =
        r.model === 'seats' ? percentile(idealLatencies(o.aloneSamples, fifo.waits), 99) : NaN;
      const aloneMedian = percentile(sorted(okMs(o.aloneSamples)), 50);
      const victimMedian = percentile(sorted(okMs(o.victims)), 50);
      const victimP99 = percentile(sorted(okMs(o.victims)), 99);
      const iP99 = percentile(ideal, 99);
      const medianWait = victimMedian - aloneMedian;
      const idealMedianWait = percentile(ideal, 50) - aloneMedian;
      const medianRatio = idealMedianWait >= 1 ? medianWait / idealMedianWait : NaN;
      const seats = r.model === 'seats';
      const idle = seats && o.util > 0 ? (serviceMs * (1 - o.util)) / o.util : NaN;
      const met = {
        p99: victimP99 <= GOALS.p99 * iP99,
        median: seats ? Number.isFinite(medianRatio) && medianRatio <= GOALS.medianWait : null,
        util: o.util >= GOALS.util,
        idle: seats ? idle <= GOALS.idleMs : null,
      };
      const all = met.p99 && met.median !== false && met.util && met.idle !== false;
      const good = o.victims.filter((v) => v.status === 200);
      const p5099 = (xs: number[]): [number, number] => {
        const s = sorted(xs.filter(Number.isFinite));
        return [percentile(s, 50), percentile(s, 99)];
      };
      const parts = {
        queue: p5099(good.map((v) => v.wait)),
        gateway: p5099(good.map((v) => v.proxy - (Number.isFinite(v.wait) ? v.wait : 0))),
        upstream: p5099(good.map((v) => v.upstream)),
      };
      const gaps =
        seats && o.freeTimes && o.startTimes ? handOffGaps(o.freeTimes, o.startTimes) : [];
      const handOff: [number, number, number] | null =
        gaps.length > 0 ? [percentile(gaps, 50), percentile(gaps, 90), percentile(gaps, 99)] : null;
      const summary = `p99 ${victimP99.toFixed(0)} vs ideal ${iP99.toFixed(0)} (${(victimP99 / iP99).toFixed(2)}×), median wait ${medianWait.toFixed(0)} vs ${idealMedianWait.toFixed(0)}, utilisation ${(o.util * 100).toFixed(1)} %${seats ? `, idle ${idle.toFixed(1)} ms per hand-off` : ''}: ${all ? 'goals met' : 'missed'}`;
      return {
        setup: o.setup.short,
        victimP99,
        idealP99: iP99,
        p99Ratio: victimP99 / iP99,
        medianWait,
        idealMedianWait,
        medianRatio,
        fifoIdealP99,
        arrivalIdealP99,
        eachAloneIdealP99,
        util: o.util,
        sampledUtil: seats ? (o.sampledUtil ?? NaN) : NaN,
        idlePerHandOff: idle,
        victims: okMs(o.victims).length,
        parts,
        handOff,
        met,
        all,
        summary,
      };
    });
}

export interface RunsContext {
  command: string;
  gateway: 'kong' | 'harness';
  seats: number;
  serviceMs: number;
  quotaRps: number;
  /** The victims' load: given, the judged ideal replays them together (contendedIdealLatencies). */
  victims?: VictimLoad;
}

const mark = (ok: boolean | null, text: string) =>
  ok === null ? text : ok ? `${text} ✓` : `**${text}** ✗`;

/** The ideals shown beside the judged one, in brackets. */
function besideIdeal(j: Judgement, seats: boolean): string {
  const parts: string[] = [];
  if (Number.isFinite(j.eachAloneIdealP99))
    parts.push(`each victim alone: ${j.eachAloneIdealP99.toFixed(0)}`);
  if (seats) {
    parts.push(`from the victims' arrivals: ${j.arrivalIdealP99.toFixed(0)}`);
    parts.push(`FIFO's: ${j.fifoIdealP99.toFixed(0)}`);
  }
  return parts.length > 0 ? ` (${parts.join('; ')})` : '';
}

/** The section: one table per model, a row per run and fair-queue setup, and the verdict. */
export function runsSection(
  runs: ReadonlyArray<{ load: number; at: string; results: readonly ModelResult[] }>,
  ctx: RunsContext,
): string {
  const models = [...new Set(runs.flatMap((r) => r.results.map((m) => m.model)))];
  const parts = models.map((model) => {
    const seats = model === 'seats';
    const rows: string[][] = [];
    const partRows: string[][] = [];
    const bySetup = new Map<string, boolean[]>();
    runs.forEach((run, i) => {
      const r = run.results.find((m) => m.model === model);
      if (!r) return;
      for (const j of judgeAgainstIdeal(r, ctx.serviceMs, ctx.victims)) {
        bySetup.set(j.setup, [...(bySetup.get(j.setup) ?? []), j.all]);
        rows.push([
          `${i + 1} (${run.at}Z, load ${run.load.toFixed(1)})`,
          j.setup,
          `${j.victimP99.toFixed(0)} / ${j.idealP99.toFixed(0)}${besideIdeal(j, seats)}`,
          mark(j.met.p99, `${j.p99Ratio.toFixed(2)}×`),
          `${j.medianWait.toFixed(0)} / ${j.idealMedianWait.toFixed(0)}`,
          mark(j.met.median, Number.isFinite(j.medianRatio) ? `${j.medianRatio.toFixed(2)}×` : '—'),
          mark(j.met.util, `${(j.util * 100).toFixed(1)} %`) +
            (Number.isFinite(j.sampledUtil)
              ? ` (sampled ${(j.sampledUtil * 100).toFixed(1)} %)`
              : ''),
          seats ? mark(j.met.idle, j.idlePerHandOff.toFixed(1)) : '—',
          String(j.victims),
          j.all ? 'yes' : 'no',
        ]);
        const pp = ([a, b]: [number, number]) => `${a.toFixed(0)} / ${b.toFixed(0)}`;
        partRows.push([
          String(i + 1),
          j.setup,
          pp(j.parts.queue),
          pp(j.parts.gateway),
          pp(j.parts.upstream),
          ...(seats ? [j.handOff ? j.handOff.map((x) => x.toFixed(1)).join(' / ') : '—'] : []),
        ]);
      }
    });
    const verdicts = [...bySetup.entries()].map(
      ([setup, oks]) =>
        `${setup}: ${oks.filter(Boolean).length} of ${oks.length} runs met every goal${
          oks.length >= 3 && oks.every(Boolean) ? ' (three or more in a row: the goal holds)' : ''
        }`,
    );
    const upstream = seats
      ? `${ctx.seats} seats × ${ctx.serviceMs} ms`
      : `a quota of ${ctx.quotaRps} starts/s, ${ctx.serviceMs} ms each`;
    const goals = seats
      ? `p99 ≤ ${GOALS.p99} × the ideal's, median wait ≤ ${GOALS.medianWait} × the ideal's, utilisation ≥ ${GOALS.util * 100} % and upstream idle ≤ ${GOALS.idleMs} ms per hand-off`
      : `p99 ≤ ${GOALS.p99} × the ideal's, utilisation ≥ ${GOALS.util * 100} %`;
    return `### Against ${seats ? 'seats' : 'a rate quota'} (${upstream}); goals: ${goals}

${table(
  [
    'run',
    'setup',
    'victim p99 / ideal p99 ms',
    '÷ ideal',
    'median wait / ideal median wait ms',
    '÷ ideal',
    'utilisation',
    'upstream idle per hand-off ms',
    'victim samples',
    'every goal',
  ],
  rows,
)}

Where the victims' time went under the flood (ms, p50 / p99): the fair queue's wait
(\`X-Queue-Wait-Ms\`), the gateway outside it (Kong's \`X-Kong-Proxy-Latency\` minus that wait:
the access phases and the seat's hand-off) and the upstream (\`X-Kong-Upstream-Latency\`)${
      seats
        ? `; against seats, beside them, the upstream's hand-offs measured on its own clock:
from each answer's end to the start the freed seat gave next (bench/lib/neighbour-runs.ts
\`handOffGaps\`), the idle time the utilisation implies, seen directly`
        : ''
    }.

${table(
  [
    'run',
    'setup',
    'fair-queue wait',
    'gateway outside the queue',
    'upstream',
    ...(seats ? ['hand-off: an answer’s end to the next start (p50 / p90 / p99)'] : []),
  ],
  partRows,
)}

${verdicts.join('; ')}.`;
  });
  return `## tenant-ratelimit: the noisy neighbour against the ideal scheduler, run after run (${ctx.gateway === 'kong' ? 'real Kong 3.9.3' : 'harness'}, ${models.map((m) => (m === 'seats' ? 'seats' : 'a rate quota')).join(' and ')})

Command: \`${ctx.command}\`. Each run measures plain FIFO and the fair-queue setups chosen, then
judges each setup on its own run. The ideal scheduler is that run's victims alone on the setup's
route plus a wait with no hand-off and no pre-emption: against seats, to the next seat that freed
on the setup's own run; against a quota, to the next start the quota granted while plain FIFO
saturated it.${
    ctx.victims
      ? ` The judged ideal replays the victims as the bench sends them (${ctx.victims.clients} clients, one request at a time, ${ctx.victims.randomThink ? `thinking 0–${2 * ctx.victims.thinkMs} ms at random` : `thinking ${ctx.victims.thinkMs} ms`}) against those instants, 200 times from random offsets: each arrival takes the next start no other victim has taken, so where two victims come within one start of each other the second waits for the start after, as under any scheduler (bench/lib/neighbour-runs.ts \`contendedIdealLatencies\`). Beside it, in brackets and not judged: the ideal counting each victim as if it were the only one (a wait from every millisecond of the flood; the ideal judged before 2026-12-07's stop 38), which no scheduler can give two victims at once.`
      : ' The wait is taken from every millisecond of the flood.'
  } Beside it for seats, in brackets and not judged: the
same ideal from the instants the victims really came (their requests' starts), and the one built
on plain FIFO's start times (earlier sections' ideal). The seats run in step (the flood's first
requests start together and each takes the service time); a victim with a fixed think time comes
back at the same phase of that step every time, so its waits are not those of an arrival at a
random instant. So the victims here think a random 0–200 ms between requests (mean 100 ms,
\`BENCH_VICTIM_THINK=random\`), and the ideal from any instant is the fair one. Median wait = the victims'
median under the flood − their median alone, against the same for the ideal. Utilisation (seats)
= mean busy seats ÷ seats from every start and end the upstream recorded (\`busySeatShare\`; in
brackets, not judged, the same sampled every 25 ms, as judged before stop 41: those samples
land in hand-offs when the loaded machine delays the upstream's process). Idle per hand-off
(seats) = service × (1 − utilisation) ÷ utilisation. The load average is the 1-minute one at the
start of each run, on this shared 2-core machine.

${parts.join('\n\n')}`;
}
