/**
 * One access phase for the chain (issue 19): in the co-hosted plugin server, tenant-auth's
 * access phase also runs the access work of the plugins Kong would run next on the request,
 * so Kong starts one phase where it started five.
 *
 * Why: a phase costs an exchange to start it, one to find its request (the plugin-server
 * protocol carries no request identity: mp_rpc.lua bridge_loop sends only the instance and the
 * phase) and one to send its writes: ≈ 3 × 50 µs of CPU on the two sides, and a wake-up of the
 * process, per plugin, before the first byte goes upstream (kong-facts.md).
 *
 * How (lib/pluginserver/pdk-batch.lua `chain`, with the phase's first reads, in one exchange):
 * - Kong's collecting iterator (kong/runloop/plugins_iterator.lua `get_next_and_collect`) reads
 *   `ngx.ctx.plugins.ws` at every step. The snippet finds the plugins that come next in Kong's
 *   order and apply to this request (the same route/service/consumer lookup), keeps those this
 *   process serves (the same plugin-server socket) up to the first other plugin with an access
 *   phase, claims their instances as Kong would (`get_instance_id`, under each plugin's own id),
 *   and gives the request a copy of the list in which their access handlers are hidden. Their
 *   header_filter, body_filter and log phases are collected and run by Kong as before.
 * - tenant-auth runs its own access, then each merged plugin's access (the same instance, the
 *   same guarded code, in Kong's order) on the same event: their reads and writes share the
 *   phase's batch, so writes go together and a `kong.ctx.shared` value set earlier in the phase
 *   is answered without an exchange (batch.ts).
 * - It stops at the first exit (a refusal, a cache hit): Kong runs no later access phase after
 *   an exit either.
 * - A merged instance this process no longer has (it expired while Kong still listed it): the
 *   merge is undone for the request (`unchain`), before any of them ran, and Kong runs their
 *   phases itself (and restarts the instance, as it does for any phase).
 * Without the snippet, without `ngx.ctx.plugins` (the harness), with a foreign plugin between,
 * or in one process per plugin, nothing is merged and every plugin's phase runs as before.
 * Fails closed as before: a merged plugin's error is its own refusal (guardPhase), and if the
 * process dies mid-phase kong.yml's chain guard refuses what no TenantContext or meter reached.
 */
import { EARLY_METHOD } from '../plugin/define';
import { SHARED_KEYS } from '../request/shared-keys';
import { CHAIN_METHOD, UNCHAIN_METHOD } from './batch-methods';

type Call = (method: string, ...args: unknown[]) => Promise<unknown>;

/** What fast-pdk.ts hands the facade of each event. */
export interface EventHandle {
  readonly call: Call;
  /** An exit was sent in this phase. */
  exited(): boolean;
  /** A kong.ctx.shared value written with the phase's last writes (batch.ts); absent unbatched. */
  sharedAtEnd?: (key: string, value: () => string) => void;
}

/** kong-pdk's instance (lib/mod.js), as the chain runs one. */
export interface ChainInstance {
  readonly name: string;
  /** The plugin object (kong-pdk's `new cls(config)`). */
  readonly cls?: object;
  resetExpireTs(): void;
  executePhase(phase: string, kong: unknown): Promise<unknown>;
}

const HANDLE = Symbol.for('kong-tenant-ai-gateway.event-handle');

let instances: ReadonlyMap<number, ChainInstance> | undefined;

/** The process's plugin instances by id (kong-pdk's server `instances`, set by fast-pdk.ts). */
export function servedInstances(map: ReadonlyMap<number, ChainInstance>): void {
  instances = map;
}

export function attachEvent<K extends object>(kong: K, handle: EventHandle): K {
  Object.defineProperty(kong, HANDLE, { value: handle, enumerable: false });
  return kong;
}

function eventOf(kong: unknown): EventHandle | undefined {
  if (typeof kong !== 'object' || kong === null) return undefined;
  return (kong as { [HANDLE]?: EventHandle })[HANDLE];
}

/** A merged plugin: its name and the instance Kong claimed for it. */
export interface Merged {
  readonly name: string;
  readonly instance: ChainInstance;
  /** Kong will not start its log phase for this request: the owner's log runs its log work. */
  readonly logHere: boolean;
}

/**
 * Asks the snippet to merge the access phases of `names` that come next on this request into
 * `owner`'s. Must be the phase's first PDK call. Answers the plugins to run, in Kong's order
 * (empty: nothing merged, each runs its own phase).
 */
export async function mergeNext(
  kong: unknown,
  owner: string,
  names: readonly string[],
  logs: readonly string[] = [],
): Promise<Merged[]> {
  const ev = eventOf(kong);
  if (!ev || !instances) return [];
  let out: unknown;
  try {
    out = await ev.call(CHAIN_METHOD, owner, names, logs);
  } catch {
    // Kong could not run it (the snippet raises nothing itself): nothing was merged.
    return [];
  }
  if (!Array.isArray(out) || out.length === 0) return [];
  // { name, id, log hidden, ... }; a snippet older than the hidden logs answers { name, id, ... }.
  const step = typeof out[2] === 'boolean' ? 3 : 2;
  const merged: Merged[] = [];
  for (let i = 0; i + 1 < out.length; i += step) {
    const [name, id] = [out[i], out[i + 1]];
    const instance = typeof id === 'number' ? instances.get(id) : undefined;
    if (typeof name !== 'string' || !instance || instance.name !== name) {
      // Kong lists an instance this process does not have: Kong runs their phases after all.
      await ev.call(UNCHAIN_METHOD);
      return [];
    }
    merged.push({ name, instance, logHere: step === 3 && out[i + 2] === true });
  }
  return merged;
}

function startEarly(kong: unknown, m: Merged): void {
  const plugin = m.instance.cls as Record<string, unknown> | undefined;
  const early = plugin?.[EARLY_METHOD];
  if (typeof early !== 'function') return;
  try {
    (early as (k: unknown) => void).call(plugin, kong);
  } catch {
    // Its access does the work itself.
  }
}

/** The log phase of a merged plugin whose log Kong will not start (`logHere`), on `kong`'s event. */
export async function runMergedLog(kong: unknown, m: Merged): Promise<void> {
  m.instance.resetExpireTs();
  await m.instance.executePhase('log', kong);
}

/**
 * `kong.ctx.shared` key of the merged plugins' access times, for the request's trace:
 * `<plugin>:<start µs>:<end µs>` joined by `;`, epoch microseconds; the end is empty for the
 * plugin that exited (Kong runs nothing of the phase after it). kong.yml's span snippet
 * (lib/tracing/span-snippet.lua) turns each into a child span of tenant-auth's access span, named
 * as Kong names a plugin's access span, so a merged plugin's time is not hidden in tenant-auth's.
 */
export const MERGED_SPANS_KEY = SHARED_KEYS.mergedSpans.key;

/** Epoch microseconds, from the process's monotonic clock (an integer below 2^53). */
function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

interface SharedSet {
  ctx: { shared: { set(key: string, value: string): Promise<unknown> } };
}

/**
 * Runs the merged plugins' access, in order, on the owner's event, until one exits. First each
 * starts its `early` read-only work (lib/plugin/define.ts): tenant-cache's lookup then shares
 * the Redis round trip of tenant-ratelimit's admission instead of following it. Their times
 * (MERGED_SPANS_KEY) are written once, with the phase's last writes or its exit (batch.ts
 * `sharedAtEnd`): the plugin that exited is listed without an end.
 */
export async function runMerged(kong: unknown, merged: readonly Merged[]): Promise<void> {
  const ev = eventOf(kong);
  const spans: string[] = [];
  let running = '';
  const times = (): string => (running === '' ? spans : [...spans, running]).join(';');
  if (ev?.sharedAtEnd) ev.sharedAtEnd(MERGED_SPANS_KEY, times);
  for (const m of merged) startEarly(kong, m);
  for (const m of merged) {
    if (ev?.exited()) return;
    const start = nowUs();
    running = `${m.name}:${start}:`;
    m.instance.resetExpireTs();
    await m.instance.executePhase('access', kong);
    spans.push(`${m.name}:${start}:${nowUs()}`);
    running = '';
  }
  // Unbatched (no snippet on the route): written now, unless a plugin exited.
  if (!ev?.sharedAtEnd && !ev?.exited() && spans.length > 0) {
    try {
      await (kong as Partial<SharedSet>).ctx?.shared.set(MERGED_SPANS_KEY, times());
    } catch {
      // Only the trace loses the plugins' times; the request goes on.
    }
  }
}
