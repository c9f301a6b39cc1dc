// Loaded plugins and configuration lookup.
// kong/runloop/plugins_iterator.lua (3.9.3): plugins run by descending priority; per plugin the
// config is looked up with lookup_cfg precedence (route+service+consumer, route+consumer,
// service+consumer, route+service, consumer, route, service, global); rewrite runs global
// configs only; a plugin whose schema has no_consumer (key-auth) ignores the consumer.
import type { DeclarativeConfig, PluginEntity } from './config/entities';
import type { ExternalPlugin } from './pluginserver/bridge';

export interface LoadedPlugin {
  name: string;
  priority: number;
  phases: Set<string>;
  noConsumer: boolean;
  external?: ExternalPlugin;
}

export class PluginTable {
  /** Sorted by descending priority (ties by name, for a stable order). */
  readonly loaded: LoadedPlugin[];
  private readonly byName = new Map<string, PluginEntity[]>();

  constructor(loaded: LoadedPlugin[], config: DeclarativeConfig) {
    this.loaded = [...loaded].sort(
      (a, b) => b.priority - a.priority || a.name.localeCompare(b.name),
    );
    for (const p of config.plugins) {
      if (!p.enabled || !p.protocols.some((x) => x === 'http' || x === 'https')) continue;
      this.byName.set(p.name, [...(this.byName.get(p.name) ?? []), p]);
    }
  }

  /** lookup_cfg of plugins_iterator.lua (3.9.3). */
  lookup(
    plugin: LoadedPlugin,
    routeId?: string,
    serviceId?: string,
    consumerId?: string,
  ): PluginEntity | undefined {
    const list = this.byName.get(plugin.name);
    if (!list) return undefined;
    const c = plugin.noConsumer ? undefined : consumerId;
    const find = (r?: string, s?: string, k?: string) =>
      list.find((p) => p.route?.id === r && p.service?.id === s && p.consumer?.id === k);
    if (routeId && serviceId && c) {
      const hit = find(routeId, serviceId, c);
      if (hit) return hit;
    }
    if (routeId && c) {
      const hit = find(routeId, undefined, c);
      if (hit) return hit;
    }
    if (serviceId && c) {
      const hit = find(undefined, serviceId, c);
      if (hit) return hit;
    }
    if (routeId && serviceId) {
      const hit = find(routeId, serviceId, undefined);
      if (hit) return hit;
    }
    if (c) {
      const hit = find(undefined, undefined, c);
      if (hit) return hit;
    }
    if (routeId) {
      const hit = find(routeId, undefined, undefined);
      if (hit) return hit;
    }
    if (serviceId) {
      const hit = find(undefined, serviceId, undefined);
      if (hit) return hit;
    }
    return find(undefined, undefined, undefined);
  }

  /** get_global_iterator: global configs of plugins having that phase. */
  globals(phase: string): Array<{ plugin: LoadedPlugin; entity: PluginEntity }> {
    const out: Array<{ plugin: LoadedPlugin; entity: PluginEntity }> = [];
    for (const plugin of this.loaded) {
      if (!plugin.phases.has(phase)) continue;
      const entity = this.lookup(plugin);
      if (entity) out.push({ plugin, entity });
    }
    return out;
  }
}
