// Kong's side of one external plugin: instances and the event loop.
// kong/runloop/plugin_servers/plugin.lua (3.9.3) get_instance_id / reset_instance and
// kong/runloop/plugin_servers/rpc/mp_rpc.lua (3.9.3) bridge_loop / handle_event.
import type { PluginEntity } from '../config/entities';
import {
  ExitSignal,
  KongLuaError,
  NotImplementedError,
  findPdkMethod,
  stepMethodFor,
  type PdkEnv,
} from '../pdk';
import type { RequestState } from '../request-state';
import type { PhaseStats, PluginDump } from '../types';
import { MpRpcClient, RpcError } from '../rpc/mp-client';
import type { PluginServerProcess } from './process';

export type EventOutcome = 'ret' | 'exit' | 'kong-error';

interface StepIn {
  EventId: number;
  Data: 'ret' | { Method: string; Args: unknown };
}

const WS_ID = '00000000-0000-4000-8000-000000000000';

/** The JSON Kong sends in StartInstance: config + the keys plugins_iterator.lua get_plugin_config adds. */
export function startInstanceConfig(p: PluginEntity, seq: number): Record<string, unknown> {
  const cfg: Record<string, unknown> = { ...p.config };
  if (p.route) cfg.route_id = p.route.id;
  if (p.service) cfg.service_id = p.service.id;
  if (p.consumer) cfg.consumer_id = p.consumer.id;
  cfg.__plugin_id = p.id;
  cfg.__ws_id = WS_ID;
  cfg.__key__ = `plugins:${p.name}:${p.route?.id ?? ''}:${p.service?.id ?? ''}:${p.consumer?.id ?? ''}::${WS_ID}`;
  cfg.__seq__ = seq;
  return cfg;
}

export class ExternalPlugin {
  readonly rpc: MpRpcClient;
  private readonly instances = new Map<string, Promise<number>>();
  private seq = 0;

  constructor(
    readonly dump: PluginDump,
    readonly proc: PluginServerProcess,
    private readonly log: (line: string) => void,
  ) {
    this.rpc = new MpRpcClient(proc.socketPath);
    proc.onRespawn(() => this.rpc.reset());
  }

  get name(): string {
    return this.dump.Name;
  }

  /** reset_instances_for_plugin */
  resetInstances(): void {
    this.instances.clear();
  }

  /**
   * kong/runloop/plugin_servers/plugin.lua (3.9.3) get_instance_id: the first request claims
   * running_instances[key] and calls StartInstance; concurrent requests wait for the claim.
   * When that StartInstance fails the claim is removed ("some other thread might succeed")
   * and only the claiming request raises; each waiter then finds no claim and starts the
   * instance itself (one at a time: the next claimant is waited on in turn).
   */
  private async instanceId(p: PluginEntity): Promise<number> {
    for (;;) {
      const pending = this.instances.get(p.id);
      if (!pending) return this.claimInstance(p);
      try {
        return await pending;
      } catch {
        // Another request's StartInstance failed; its claim is gone, so try again.
      }
    }
  }

  private claimInstance(p: PluginEntity): Promise<number> {
    const conf = startInstanceConfig(p, ++this.seq);
    const claim: Promise<number> = this.rpc
      .call('plugin.StartInstance', { Name: this.name, Config: JSON.stringify(conf) })
      .then(
        (status) => (status as { Id: number }).Id,
        (e: unknown) => {
          // Remove the claim before anyone awaiting it resumes.
          if (this.instances.get(p.id) === claim) this.instances.delete(p.id);
          throw e;
        },
      );
    this.instances.set(p.id, claim);
    return claim;
  }

  /** Runs one phase of one plugin for a request; returns how the handler ended. */
  async handleEvent(
    st: RequestState,
    p: PluginEntity,
    env: PdkEnv,
    retried = false,
  ): Promise<EventOutcome> {
    const stats = phaseStats(st, this.name, env.phase);
    const t0 = performance.now();
    try {
      let iid: number;
      try {
        iid = await this.instanceId(p);
      } catch (e) {
        if (!(e instanceof RpcError)) throw e;
        // kong/runloop/plugin_servers/plugin.lua (3.9.3) get_instance_id: when
        // plugin.StartInstance fails (the plugin's constructor threw, or the server is down) it
        // logs "starting instance: <err>" and raises error(err). handle_event does not catch
        // it, so it is a Lua error in the phase: access -> 500 "An unexpected error occurred"
        // (kong/init.lua execute_collecting_plugins_iterator), rewrite/response -> 500 from
        // the error handler, log -> only logged in the timer. Not fail-open.
        const msg = `${this.name} ${env.phase} plugin.StartInstance: ${e.message}`;
        st.stats.pdkErrors.push(msg);
        this.log(`[kong] error [${this.name}] starting instance: ${e.message}`);
        return 'kong-error';
      }
      let stepIn = (await this.rpc.call('plugin.HandleEvent', {
        InstanceId: iid,
        EventName: env.phase,
      })) as StepIn;
      count(st, stats);
      while (stepIn.Data !== 'ret') {
        const { Method, Args } = stepIn.Data;
        stats.pdkCalls[Method] = (stats.pdkCalls[Method] ?? 0) + 1;
        const args = Array.isArray(Args) ? Args : [Args];
        let stepMethod: string;
        let data: unknown;
        try {
          data = findPdkMethod(Method)(st, args, env);
          stepMethod = stepMethodFor(Method);
        } catch (e) {
          if (e instanceof ExitSignal) return 'exit';
          if (e instanceof KongLuaError) {
            const msg = `${this.name} ${env.phase} ${Method}: ${e.message}`;
            st.stats.pdkErrors.push(msg);
            this.log(
              `[kong] error [${this.name}] ${msg} (the plugin's call never returns, as in Kong)`,
            );
            return 'kong-error';
          }
          if (!(e instanceof NotImplementedError)) throw e;
          this.log(`[harness] ${e.message}`);
          stepMethod = 'plugin.StepError';
          data = e.message;
        }
        stepIn = (await this.rpc.call(stepMethod, {
          EventId: stepIn.EventId,
          Data: data ?? null,
        })) as StepIn;
        count(st, stats);
      }
      return 'ret';
    } catch (e) {
      if (!(e instanceof RpcError)) throw e;
      if (e.message.toLowerCase().includes('no plugin instance') && !retried) {
        this.log(`[kong] warn ${e.message}`);
        this.resetInstances();
        return this.handleEvent(st, p, env, true);
      }
      // mp_rpc.lua handle_event: any other error is only logged; the phase ends as if it returned.
      st.stats.pdkErrors.push(
        `${this.name} ${env.phase}: rpc error: ${e.message} (phase skipped, as Kong does)`,
      );
      this.log(`[kong] error [${this.name}] ${e.message}`);
      return 'ret';
    } finally {
      stats.ms += performance.now() - t0;
    }
  }
}

function phaseStats(st: RequestState, plugin: string, phase: string): PhaseStats {
  const byPhase = (st.stats.plugins[plugin] ??= {});
  return (byPhase[phase] ??= { roundTrips: 0, pdkCalls: {}, ms: 0 });
}

function count(st: RequestState, stats: PhaseStats): void {
  stats.roundTrips++;
  st.stats.totalRoundTrips++;
}
