/**
 * What the batch meter's access phase leaves its log phase (in `kong.ctx.shared.token_meter`,
 * beside the meter state of a metered request: meter.ts writes it, settle.ts reads it), and
 * what both phases share: the records' store and how long an open batch's record lives.
 */
import type { Ready } from '../ready';
import type { BatchInputSummary } from './input';
import { BatchStore, type OpenBatch } from './store';

/** What access leaves the log phase (in `kong.ctx.shared.token_meter`). */
export type BatchState =
  | { readonly v: 1; readonly batch: 'upload'; readonly summary: BatchInputSummary }
  | { readonly v: 1; readonly batch: 'create'; readonly open: OpenBatch }
  | { readonly v: 1; readonly batch: 'read'; readonly id: string };

/** How long an open batch's record outlives its reservation (a late read still corrects it). */
export const OPEN_RECORD_EXTRA_MS = 30 * 86_400_000;

/** The store, once Redis is connected (or given up on: then its calls fail as unavailable). */
export const storeOf = async (ready: Ready) => new BatchStore(await ready.readyRedis(), ready.keys);

/** A meter state of the batch meter, or undefined. */
export function decodeBatchState(raw: unknown): BatchState | undefined {
  if (typeof raw !== 'string' || !raw.startsWith('{"v":1,"batch":')) return undefined;
  try {
    const s = JSON.parse(raw) as BatchState;
    return s.batch === 'upload' || s.batch === 'create' || s.batch === 'read' ? s : undefined;
  } catch {
    return undefined;
  }
}
