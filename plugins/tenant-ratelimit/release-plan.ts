/**
 * How log sends its Redis calls: the seat's release and the tenant lease's settle, in as few
 * round trips as possible. What needs no observed usage may go before the usage is read (one
 * PDK call): the seat when the queue was busy, so the next waiter does not wait for that
 * call; the rest goes after it, together.
 */
export interface ReleaseFacts {
  /** Where the seat was taken: the cluster's fair queue, this node's limiter, or none. */
  readonly seat: 'cluster' | 'local' | null;
  /** Where the tenant's lease was taken. */
  readonly lease: 'cluster' | 'local';
  /** The queue had waiters at admission, or the request waited (absent: assume busy). */
  readonly busy: boolean | undefined;
  /** The tenant has a tokens-per-minute limit: its settle needs the usage. */
  readonly tenantTokens: boolean;
  /** The upstream has a tokens capacity: the seat's release needs the usage. */
  readonly upstreamTokens: boolean;
}

export interface ReleasePlan {
  /** Sent before the usage is read. */
  readonly early: { readonly seat: boolean; readonly lease: boolean };
  /** Sent after it, together. */
  readonly late: { readonly seat: boolean; readonly lease: boolean };
}

export function releasePlan(f: ReleaseFacts): ReleasePlan {
  const clusterSeat = f.seat === 'cluster';
  const clusterLease = f.lease === 'cluster';
  const leaseNeedsUsage = clusterLease && f.tenantTokens;
  const seatNeedsUsage = clusterSeat && f.upstreamTokens;
  const earlySeat = clusterSeat && !seatNeedsUsage && (f.busy !== false || !leaseNeedsUsage);
  const earlyLease = clusterLease && !leaseNeedsUsage && (earlySeat || !clusterSeat);
  return {
    early: { seat: earlySeat, lease: earlyLease },
    late: { seat: clusterSeat && !earlySeat, lease: clusterLease && !earlyLease },
  };
}

/** Round trips the plan costs: one per non-empty batch. */
export function roundTrips(plan: ReleasePlan): number {
  return (
    (plan.early.seat || plan.early.lease ? 1 : 0) + (plan.late.seat || plan.late.lease ? 1 : 0)
  );
}
