/**
 * What access keeps for log about an admitted request: the tenant's lease and where it was
 * taken, the charges to correct once the usage is known, and the seat to hand back. Kept in
 * the request's scope (no PDK call), else in `kong.ctx.shared` as versioned JSON
 * (lib/request/for-log.ts); read back through one codec that refuses any other shape.
 */
import type { LogRecordSpec } from '../../lib/request/for-log';
import { slot } from '../../lib/request/scope';
import type { TenantLimits } from './tenant-limits';
import { SHARED_KEYS } from '../../lib/request/shared-keys';

export const PLUGIN_NAME = 'tenant-ratelimit';

/** The `kong.ctx.shared` key of the record when the request's scope cannot be found again. */
export const RECORD_KEY = SHARED_KEYS.ratelimitRecord.key;

/** Where a limit was applied: cluster-wide in Redis, or by this node alone (Redis down). */
export type Scope = 'cluster' | 'local';

export interface AdmissionRecord {
  v: 1;
  tenant: string;
  /** The tenant's lease id, also the request's ticket in the fair queue. */
  lease: string;
  /** Where the tenant's lease was taken. */
  scope: Scope;
  /** Tokens charged to the tenant's bucket (the estimate, capped at its burst). */
  charged: number;
  /** Tokens charged to the upstream's bucket (the estimate). */
  width: number;
  seat: Scope | null;
  limits: TenantLimits;
  /**
   * The queue had waiters when this request was admitted (or it waited itself): log then
   * hands the seat back before reading the usage, so the next waiter does not wait for a PDK
   * call. Absent in records of earlier versions.
   */
  busy?: boolean;
  /**
   * The seat was left for circuit-breaker (lib/request/seat.ts): `left`, then `asked` once
   * circuit-breaker ran for the request (whether or not its upstream needed a seat).
   */
  handOff?: 'left' | 'asked';
}

function isAdmissionRecord(o: unknown): o is AdmissionRecord {
  if (o === null || typeof o !== 'object') return false;
  const r = o as Partial<AdmissionRecord>;
  return (
    r.v === 1 &&
    typeof r.tenant === 'string' &&
    typeof r.lease === 'string' &&
    (r.scope === 'cluster' || r.scope === 'local') &&
    typeof r.charged === 'number' &&
    typeof r.width === 'number' &&
    typeof r.limits === 'object' &&
    r.limits !== null &&
    (r.busy === undefined || typeof r.busy === 'boolean') &&
    (r.handOff === undefined || r.handOff === 'left' || r.handOff === 'asked')
  );
}

export function encodeRecord(r: AdmissionRecord): string {
  return JSON.stringify(r);
}

/** The record, or undefined for anything else (another version, another writer, not JSON). */
export function decodeRecord(raw: unknown): AdmissionRecord | undefined {
  if (typeof raw !== 'string') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return undefined;
  }
  return isAdmissionRecord(parsed) ? parsed : undefined;
}

/** Access's record for log: kept in the request's scope, else in kong.ctx.shared. */
export const RECORD: LogRecordSpec<AdmissionRecord> = {
  plugin: PLUGIN_NAME,
  // First in the chain's log phase: the seat and the lease may be what another request waits for.
  order: 0,
  slot: slot<AdmissionRecord>(RECORD_KEY),
  sharedKey: RECORD_KEY,
  encode: encodeRecord,
  decode: decodeRecord,
};
