/**
 * The count of PDK exchanges of this process: every phase start and every call (a batch is
 * one), per plugin and phase.
 */

/**
 * Exchanges with Kong per plugin and phase in this process: the phase's start and each call
 * (a batch is one). What `kta_pdk_exchanges_total` exports (lib/pluginserver/harden.ts), so
 * the chain's cost can be counted on the real Kong, not only in the harness.
 */
export const exchangeCounts = new Map<string, { plugin: string; phase: string; n: number }>();

export function countExchange(plugin: string, phase: string): void {
  const key = `${plugin}\u0000${phase}`;
  const c = exchangeCounts.get(key);
  if (c) c.n++;
  else exchangeCounts.set(key, { plugin, phase, n: 1 });
}
