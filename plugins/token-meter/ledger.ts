/**
 * The ledger entry (one per settled request, in the tenant's Redis stream for the period)
 * and the local spool that keeps settlements while Redis is unavailable.
 *
 * The spool is a directory of JSON-lines files, one per plugin-server process. A replay
 * claims a file by renaming it (atomic: two processes never replay the same file), settles
 * each line through the same exactly-once script (a line already settled is a no-op), and
 * puts back what still fails. Nothing is lost while the disk holds; nothing counts twice.
 */
import { appendFileSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { isRedisUnavailable } from '../../lib/redis/errors';
import type { RedisClient } from '../../lib/redis/client';
import type { Keyspace } from '../../lib/redis/keys';
import { parseTenantId, type TenantId } from '../../lib/tenant/tenant-id';
import { settleBudget, type Downgrade, type Settlement, type SettleResult } from './budget';

/**
 * What an estimated entry's counts rest on (field `estimate_basis`, on estimated entries only):
 * - `prompt=tokenizer;completion=bound`: no usage reached the gateway (the upstream sent none the
 *   usage reader reads, the answer was cut, the client left, or the log phase never ran and the
 *   reservation expired): the tokenizer's count of the prompt as token-meter saw it and the
 *   completion bound the request was held to (tokens per choice × choices). Never less than
 *   the upstream could have billed for the completion.
 * - `tokens=kong;price=request_model`: ai-request-transformer's own LLM call, its tokens as Kong
 *   counted them, priced at the request's model because the transformer's model has no price.
 */
export type EstimateBasis = 'prompt=tokenizer;completion=bound' | 'tokens=kong;price=request_model';

export const ESTIMATED_FROM_BOUND: EstimateBasis = 'prompt=tokenizer;completion=bound';

export interface LedgerEntry {
  readonly ts: number;
  readonly modelAsked: string;
  readonly modelServed: string;
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly cachedTokens: number;
  /** nano-USD */
  readonly cost: number;
  readonly cacheHit: boolean;
  readonly estimated: boolean;
  /** Estimated entries: what the estimate rests on (default: the tokenizer and the bound). */
  readonly estimateBasis?: EstimateBasis;
  readonly downgrade: Downgrade;
  readonly stream: boolean;
  readonly status: number;
  /** A batch's settlement: the provider's batch id (field `batch_id`; batch/meter.ts). */
  readonly batchId?: string;
}

export function ledgerFields(e: LedgerEntry): Record<string, string> {
  const fields: Record<string, string> = {
    ts: String(e.ts),
    model_asked: e.modelAsked,
    model: e.modelServed,
    prompt: String(e.promptTokens),
    completion: String(e.completionTokens),
    cached: String(e.cachedTokens),
    cost_nusd: String(e.cost),
    cache_hit: e.cacheHit ? '1' : '0',
    estimated: e.estimated ? '1' : '0',
    downgrade: e.downgrade,
    stream: e.stream ? '1' : '0',
    status: String(e.status),
  };
  if (e.estimated) fields.estimate_basis = e.estimateBasis ?? ESTIMATED_FROM_BOUND;
  if (e.batchId !== undefined) fields.batch_id = e.batchId;
  return fields;
}

/**
 * Who settled an entry: `log` (the log phase, or its spool replay) or `expiry` (the sweep of
 * expired reservations, when the log phase never ran: billed as estimated, status 0). Only
 * expiry entries carry the field (`settled_by`); entries without it were settled by `log`.
 */
export type SettledBy = 'log' | 'expiry';

export interface StoredLedgerEntry extends LedgerEntry {
  readonly requestId: string;
  readonly settledBy: SettledBy;
}

const int = (v: string | undefined): number => {
  const n = Number(v);
  return Number.isFinite(n) && n >= 0 ? n : 0;
};

/** A stream entry's fields back to an entry (tolerant: missing numbers read as 0). */
export function parseLedgerFields(f: Record<string, string>): StoredLedgerEntry {
  const d = f.downgrade;
  return {
    requestId: f.rid ?? '',
    ts: int(f.ts),
    modelAsked: f.model_asked ?? '',
    modelServed: f.model ?? '',
    promptTokens: int(f.prompt),
    completionTokens: int(f.completion),
    cachedTokens: int(f.cached),
    cost: int(f.cost_nusd),
    cacheHit: f.cache_hit === '1',
    estimated: f.estimated === '1',
    ...(f.estimated === '1' && f.estimate_basis
      ? { estimateBasis: f.estimate_basis as EstimateBasis }
      : {}),
    downgrade: d === 'fallback' || d === 'clamp' ? d : 'none',
    stream: f.stream === '1',
    status: int(f.status),
    ...(f.batch_id ? { batchId: f.batch_id } : {}),
    settledBy: f.settled_by === 'expiry' ? 'expiry' : 'log',
  };
}

/** Reads a tenant's ledger for one period, entries with ts in [fromMs, toMs). */
export async function readLedger(
  redis: RedisClient,
  keys: Keyspace,
  tenant: TenantId,
  period: string,
  fromMs: number,
  toMs: number,
  maxEntries = 100_000,
): Promise<StoredLedgerEntry[]> {
  const key = keys.usageLedger(tenant, period);
  const out: StoredLedgerEntry[] = [];
  let start = '-';
  for (;;) {
    const batch = (await redis.xRange(key, start, '+', { COUNT: 1000 })) ?? [];
    for (const m of batch) {
      if (!m) continue;
      const e = parseLedgerFields(m.message as Record<string, string>);
      if (e.ts >= fromMs && e.ts < toMs) out.push(e);
    }
    if (batch.length < 1000 || out.length >= maxEntries) break;
    start = `(${batch[batch.length - 1]?.id ?? '0-0'}`;
  }
  return out;
}

export interface SpoolJob {
  readonly tenant: string;
  readonly period: string;
  readonly settlement: Settlement;
}

export class Spool {
  constructor(readonly dir: string) {}

  private file(): string {
    return path.join(this.dir, `spool-${process.pid}.jsonl`);
  }

  append(job: SpoolJob): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    appendFileSync(this.file(), `${JSON.stringify(job)}\n`, { mode: 0o600 });
  }

  /** Files waiting to be replayed (this process's and any other's). */
  pending(): string[] {
    try {
      return readdirSync(this.dir).filter((f) => /^spool-\d+\.jsonl$/.test(f));
    } catch {
      return [];
    }
  }

  /**
   * Replays every pending file. Returns counts; stops at the first outage (what is left is
   * spooled again and retried on the next call).
   */
  async replay(
    settle: (tenant: TenantId, period: string, s: Settlement) => Promise<SettleResult>,
  ): Promise<{ settled: number; duplicate: number; failed: number; corrected: number }> {
    // corrected: settled over an estimate billed at expiry while Redis was away (among settled).
    const counts = { settled: 0, duplicate: 0, failed: 0, corrected: 0 };
    for (const name of this.pending()) {
      const claimed = path.join(this.dir, `replaying-${process.pid}-${Date.now()}-${name}`);
      try {
        renameSync(path.join(this.dir, name), claimed);
      } catch {
        continue; // another process claimed it
      }
      const lines = readFileSync(claimed, 'utf8').split('\n').filter(Boolean);
      rmSync(claimed);
      let outage = false;
      for (const line of lines) {
        let job: SpoolJob;
        try {
          job = JSON.parse(line) as SpoolJob;
        } catch {
          counts.failed += 1;
          continue;
        }
        if (outage) {
          this.append(job);
          continue;
        }
        try {
          const r = await settle(parseTenantId(job.tenant), job.period, job.settlement);
          if (r.settled) counts.settled += 1;
          else counts.duplicate += 1;
          if (r.corrected) counts.corrected += 1;
        } catch (e) {
          if (isRedisUnavailable(e)) {
            outage = true;
            this.append(job);
          } else counts.failed += 1;
        }
      }
    }
    return counts;
  }
}

/** The settle call the spool replays: the same exactly-once script. */
export function spoolSettler(
  redis: RedisClient,
  keys: Keyspace,
): (tenant: TenantId, period: string, s: Settlement) => Promise<SettleResult> {
  return (tenant, period, s) => settleBudget(redis, keys, tenant, period, s);
}
