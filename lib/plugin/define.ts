/**
 * The plugin kit: what every plugin of ours does the same way, written once, after Kong's
 * `define` + `as_kong_plugin` for its bundled plugins. A plugin declares its name, version,
 * priority and schema, its start-up (config -> ready state, or the reason it cannot run) and
 * its phases; the kit owns:
 * - the start-up, never thrown past: Kong 3.9 answers a failed StartInstance by running the
 *   route without the plugin (failing open), so an unusable config is kept and every request
 *   is refused with the one `plugin_misconfigured` 500 (`misconfigured`), logged, never proxied;
 * - the metrics server of a ready instance (once per host:port per process, lib/metrics);
 * - the phase guards (lib/plugin/phase.ts): in access an error becomes its OpenAI-shaped
 *   refusal, in log (always after the response) it is logged, never answered;
 * - which phases Kong sees: kong-pdk lists the functions of the plugin's prototype as its
 *   phases, and Kong starts an exchange for each (lib/pluginserver/chain-entry.ts), so a phase
 *   the plugin does not declare is not on the prototype at all.
 * Each plugin's index.ts then keeps only its phases.
 */
import { serveMetrics } from '../metrics/registry';
import { GatewayError } from '../http/errors';
import type { KongPdk } from '../pdk/kong';
import { guardPhase } from './phase';
import { notify } from '../pdk/notices';

/** An instance's start-up: ready to serve, or why it cannot. */
export type StartUp<R> =
  { readonly ok: true; readonly ready: R } | { readonly ok: false; readonly reason: string };

/** `build()`'s ready state, or what it threw as the reason. */
export function startUpOf<R>(build: () => R): StartUp<R> {
  try {
    return { ok: true, ready: build() };
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? e.message : String(e) };
  }
}

/** The one refusal of a misconfigured instance (500, the request not forwarded). */
export function misconfigured(plugin: string): GatewayError {
  return new GatewayError({
    status: 500,
    type: 'server_error',
    code: 'plugin_misconfigured',
    message: `${plugin} is misconfigured on this route; the request was not forwarded`,
  });
}

export interface PluginSpec<R, N> {
  readonly name: string;
  readonly version: string;
  /** Kong's order: higher first (docs/architecture.md has the chain's). */
  readonly priority: number;
  readonly schema: unknown;
  /** Config -> ready state; a throw is kept as the reason (see `startUpOf`). */
  startUp(raw: unknown): StartUp<R>;
  /** Where a ready instance serves its metrics (port 0: not served). */
  metricsAt?(ready: R): { readonly port: number; readonly host: string };
  /** A fresh per-request record the access phase fills for `onRefusal` (metrics labels). */
  note?(): N;
  access?(ready: R, kong: KongPdk, note: N): Promise<void>;
  /** Called with a refusal of access before it is answered (metrics); never throws past. */
  onRefusal?(error: GatewayError, note: N): void;
  /** After the response: an error is logged, never answered. Not called when misconfigured. */
  log?(ready: R, kong: KongPdk): Promise<void>;
  /**
   * Read-only work this plugin's access may start before the plugins ahead of it in the same
   * access phase run (the co-hosted chain, lib/pluginserver/chain-access.ts `runMerged`): a
   * Redis read that then shares their round trip. It must write nothing (those plugins may
   * still refuse the request) and leave what it read only where this request's own access
   * finds it. Never called for a misconfigured instance; what it throws is dropped, and access
   * then does the work itself.
   */
  early?(ready: R, kong: KongPdk): void;
}

/** The name of the method a kit plugin's instance answers `early` with (not a Kong phase). */
export const EARLY_METHOD = 'early';

/** What an instance of a kit plugin exposes besides its phases (tests, the chain entry). */
export interface KitPlugin<R> {
  readonly startUp: StartUp<R>;
}

export interface KitModule<R> {
  readonly Name: string;
  readonly Version: string;
  readonly Priority: number;
  readonly Schema: unknown;
  readonly Plugin: new (raw: unknown) => KitPlugin<R>;
}

export function definePlugin<R, N = undefined>(spec: PluginSpec<R, N>): KitModule<R> {
  const { name } = spec;
  const refusal = misconfigured(name);
  class Plugin implements KitPlugin<R> {
    readonly startUp: StartUp<R>;
    constructor(raw: unknown) {
      let s: StartUp<R>;
      try {
        s = spec.startUp(raw);
      } catch (e) {
        s = { ok: false, reason: e instanceof Error ? e.message : String(e) };
      }
      this.startUp = s;
      if (s.ok && spec.metricsAt) {
        const { port, host } = spec.metricsAt(s.ready);
        serveMetrics(name, port, host, (e) =>
          notify(`${name}: metrics endpoint ${host}:${port} failed: ${e.message}`),
        );
      }
    }
  }
  const proto = Plugin.prototype as unknown as Record<string, unknown>;
  const access = spec.access;
  if (access) {
    proto.access = async function (this: Plugin, kong: unknown): Promise<void> {
      const note = spec.note?.() as N;
      await guardPhase(
        kong,
        name,
        'access',
        async (k) => {
          const s = this.startUp;
          if (!s.ok) {
            void k.log.err(`${name} is misconfigured, refusing: ${s.reason}`);
            throw refusal;
          }
          await access(s.ready, k, note);
        },
        spec.onRefusal ? { onRefusal: (e) => spec.onRefusal?.(e, note) } : {},
      );
    };
  }
  const early = spec.early;
  if (early) {
    proto[EARLY_METHOD] = function (this: Plugin, kong: unknown): void {
      const s = this.startUp;
      if (!s.ok) return;
      try {
        early(s.ready, kong as KongPdk);
      } catch {
        // Access does the work itself.
      }
    };
  }
  const log = spec.log;
  if (log) {
    proto.log = async function (this: Plugin, kong: unknown): Promise<void> {
      await guardPhase(
        kong,
        name,
        'log',
        async (k) => {
          const s = this.startUp;
          if (s.ok) await log(s.ready, k);
        },
        { afterResponse: true },
      );
    };
  }
  return {
    Name: name,
    Version: spec.version,
    Priority: spec.priority,
    Schema: spec.schema,
    Plugin,
  };
}
