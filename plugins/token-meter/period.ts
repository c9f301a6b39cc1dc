/**
 * Budget periods, calendar UTC. A period has an id usable in a Redis key (`2026-11`,
 * `2026-11-28`, `2026-11-28-14`), a start and an end (the reset time).
 */
import type { Period } from './config';

export interface PeriodWindow {
  readonly id: string;
  readonly startMs: number;
  readonly endMs: number;
}

const pad = (n: number): string => String(n).padStart(2, '0');

export function periodAt(kind: Period, nowMs: number): PeriodWindow {
  const d = new Date(nowMs);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth();
  const day = d.getUTCDate();
  const h = d.getUTCHours();
  if (kind === 'month') {
    return { id: `${y}-${pad(m + 1)}`, startMs: Date.UTC(y, m, 1), endMs: Date.UTC(y, m + 1, 1) };
  }
  if (kind === 'day') {
    return {
      id: `${y}-${pad(m + 1)}-${pad(day)}`,
      startMs: Date.UTC(y, m, day),
      endMs: Date.UTC(y, m, day + 1),
    };
  }
  return {
    id: `${y}-${pad(m + 1)}-${pad(day)}-${pad(h)}`,
    startMs: Date.UTC(y, m, day, h),
    endMs: Date.UTC(y, m, day, h + 1),
  };
}

/** Every period of `kind` overlapping [fromMs, toMs), oldest first (at most `max`). */
export function periodsBetween(
  kind: Period,
  fromMs: number,
  toMs: number,
  max = 1000,
): PeriodWindow[] {
  const out: PeriodWindow[] = [];
  let p = periodAt(kind, fromMs);
  while (p.startMs < toMs && out.length < max) {
    out.push(p);
    p = periodAt(kind, p.endMs);
  }
  return out;
}
