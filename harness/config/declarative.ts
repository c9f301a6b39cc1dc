// Reads a Kong declarative config (`_format_version: "3.0"`): services (url or
// protocol/host/port/path), routes (nested or top-level with `service:`), consumers with
// keyauth_credentials, plugins at every scope (nested, or top-level with service:/route:/consumer:).
// Field defaults follow kong/db/schema/entities/{services,routes,consumers,plugins}.lua (3.9.3).
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type {
  ConsumerEntity,
  DeclarativeConfig,
  KeyAuthCredentialEntity,
  PluginEntity,
  RouteEntity,
  ServiceEntity,
} from './entities';
import { isUuid, kongDeclarativeId, stableId } from './ids';
import { ConfigError, FieldReader, isObj, type Obj } from './reader';

export { ConfigError };

const MAX_TIMEOUT = 2147483646; // typedefs.timeout: between 1 and 2^31-2
const HTTP_METHODS = /^[A-Z]+$/;
const DEFAULT_PLUGIN_PROTOCOLS = ['grpc', 'grpcs', 'http', 'https'];
type Scope = { service?: ServiceEntity; route?: RouteEntity; consumer?: ConsumerEntity };
type PendingPlugin = {
  obj: Obj;
  path: string;
  scope: Scope;
  refs: { service?: string; route?: string; consumer?: string };
};

class DeclarativeReader {
  readonly errors: string[] = [];
  readonly out: DeclarativeConfig = {
    services: [],
    routes: [],
    consumers: [],
    keyauthCredentials: [],
    plugins: [],
  };
  private readonly pendingPlugins: PendingPlugin[] = [];
  private readonly pendingRoutes: Array<{ route: RouteEntity; serviceRef: string; path: string }> =
    [];
  private readonly pendingCreds: Array<{ cred: Obj; consumerRef: string; path: string }> = [];

  read(doc: unknown): DeclarativeConfig {
    if (!isObj(doc)) throw new ConfigError(['expected a YAML mapping at the top level']);
    const top = new FieldReader(doc, 'kong.yml', this.errors);
    top.allowOnly([
      '_format_version',
      '_transform',
      '_comment',
      'services',
      'routes',
      'consumers',
      'plugins',
      'keyauth_credentials',
    ]);
    if (doc._format_version !== '3.0') {
      top.fail('_format_version', `expected "3.0", got ${JSON.stringify(doc._format_version)}`);
    }
    top.list('services').forEach((s, i) => this.service(s, `services[${i}]`));
    top.list('consumers').forEach((c, i) => this.consumer(c, `consumers[${i}]`));
    top.list('routes').forEach((r, i) => this.routeTop(r, `routes[${i}]`));
    top.list('keyauth_credentials').forEach((c, i) => {
      const ref = new FieldReader(c, `keyauth_credentials[${i}]`, this.errors).string(
        'consumer',
        true,
      );
      if (ref)
        this.pendingCreds.push({ cred: c, consumerRef: ref, path: `keyauth_credentials[${i}]` });
    });
    top.list('plugins').forEach((p, i) => {
      const r = new FieldReader(p, `plugins[${i}]`, this.errors);
      this.pendingPlugins.push({
        obj: p,
        path: `plugins[${i}]`,
        scope: {},
        refs: {
          service: r.string('service'),
          route: r.string('route'),
          consumer: r.string('consumer'),
        },
      });
    });
    this.resolve();
    if (this.errors.length > 0) throw new ConfigError(this.errors);
    return this.out;
  }

  private service(obj: Obj, path: string): void {
    const r = new FieldReader(obj, path, this.errors);
    r.allowOnly([
      'id',
      'name',
      'url',
      'protocol',
      'host',
      'port',
      'path',
      'connect_timeout',
      'read_timeout',
      'write_timeout',
      'retries',
      'tags',
      'enabled',
      'routes',
      'plugins',
    ]);
    const name = r.string('name');
    let protocol = r.string('protocol') ?? 'http';
    let host = r.string('host');
    let port = r.integer('port', protocol === 'https' ? 443 : 80, 0, 65535);
    let svcPath = r.string('path');
    const url = r.string('url');
    if (url !== undefined) {
      try {
        const u = new URL(url);
        protocol = u.protocol.replace(/:$/, '');
        host = u.hostname.replace(/^\[|\]$/g, '');
        port = u.port ? Number(u.port) : protocol === 'https' ? 443 : 80;
        svcPath = u.pathname === '/' && !/^[a-z]+:\/\/[^/]+\/$/i.test(url) ? undefined : u.pathname;
      } catch {
        r.fail('url', `invalid url: ${url}`);
      }
    }
    if (protocol !== 'http' && protocol !== 'https')
      r.fail('protocol', 'expected one of: http, https (the harness proxies HTTP only)');
    if (!host) r.fail('host', 'required field missing');
    if (svcPath !== undefined && !svcPath.startsWith('/')) r.fail('path', 'should start with: /');
    const svc: ServiceEntity = {
      id: r.string('id') ?? kongDeclarativeId('services', name),
      name,
      protocol: protocol === 'https' ? 'https' : 'http',
      host: host ?? '',
      port,
      path: svcPath,
      connect_timeout: r.integer('connect_timeout', 60000, 1, MAX_TIMEOUT),
      read_timeout: r.integer('read_timeout', 60000, 1, MAX_TIMEOUT),
      write_timeout: r.integer('write_timeout', 60000, 1, MAX_TIMEOUT),
      retries: r.integer('retries', 5, 0, 32767),
      tags: r.strings('tags'),
      enabled: r.bool('enabled', true),
    };
    if (name && this.out.services.some((s) => s.name === name))
      r.fail('name', `UNIQUE violation: service '${name}' already declared`);
    this.out.services.push(svc);
    r.list('routes').forEach((ro, i) => this.route(ro, `${path}.routes[${i}]`, svc));
    this.nestedPlugins(r, path, { service: svc });
  }

  private routeTop(obj: Obj, path: string): void {
    const r = new FieldReader(obj, path, this.errors);
    const ref = r.string('service');
    const route = this.route(obj, path, undefined);
    if (ref !== undefined) this.pendingRoutes.push({ route, serviceRef: ref, path });
  }

  private route(obj: Obj, path: string, svc: ServiceEntity | undefined): RouteEntity {
    const r = new FieldReader(obj, path, this.errors);
    r.allowOnly([
      'id',
      'name',
      'paths',
      'methods',
      'hosts',
      'protocols',
      'strip_path',
      'preserve_host',
      'regex_priority',
      'path_handling',
      'tags',
      'plugins',
      ...(svc ? [] : ['service']),
    ]);
    const name = r.string('name');
    const paths = r.strings('paths');
    paths?.forEach((p, i) => {
      if (!p.startsWith('/') && !p.startsWith('~'))
        r.fail(`paths[${i + 1}]`, 'should start with: / (fixed path) or ~/ (regex path)');
      if (p.startsWith('~')) {
        try {
          new RegExp(p.slice(1));
        } catch {
          r.fail(`paths[${i + 1}]`, `invalid regex: '${p.slice(1)}'`);
        }
      }
    });
    const methods = r.strings('methods');
    methods?.forEach((m, i) => {
      if (!HTTP_METHODS.test(m)) r.fail(`methods[${i + 1}]`, `invalid value: ${m}`);
    });
    const hosts = r.strings('hosts');
    if (!paths?.length && !methods?.length && !hosts?.length) {
      this.errors.push(
        `${path}: must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'http'`,
      );
    }
    const pathHandling = r.string('path_handling') ?? 'v0';
    if (pathHandling !== 'v0' && pathHandling !== 'v1')
      r.fail('path_handling', 'expected one of: v0, v1');
    const route: RouteEntity = {
      id: r.string('id') ?? kongDeclarativeId('routes', name),
      name,
      paths,
      methods,
      hosts: hosts?.map((h) => h.toLowerCase()),
      protocols: r.strings('protocols') ?? ['http', 'https'],
      strip_path: r.bool('strip_path', true),
      preserve_host: r.bool('preserve_host', false),
      regex_priority: r.integer('regex_priority', 0, -2147483648, 2147483647),
      path_handling: pathHandling === 'v1' ? 'v1' : 'v0',
      service: svc ? { id: svc.id } : undefined,
      tags: r.strings('tags'),
    };
    if (name && this.out.routes.some((x) => x.name === name))
      r.fail('name', `UNIQUE violation: route '${name}' already declared`);
    this.out.routes.push(route);
    this.nestedPlugins(r, path, { route, service: svc });
    return route;
  }

  private consumer(obj: Obj, path: string): void {
    const r = new FieldReader(obj, path, this.errors);
    r.allowOnly(['id', 'username', 'custom_id', 'tags', 'keyauth_credentials', 'plugins']);
    const username = r.string('username');
    const customId = r.string('custom_id');
    if (username === undefined && customId === undefined) {
      this.errors.push(
        `${path}: at least one of these fields must be non-empty: 'custom_id', 'username'`,
      );
    }
    if (username && this.out.consumers.some((c) => c.username === username))
      r.fail('username', `UNIQUE violation: consumer '${username}' already declared`);
    // kong/db/schema/others/declarative_config.lua validate_uniqueness (custom_id is unique in
    // the consumers schema): Kong's message, as the real Kong 3.9.3 prints it.
    if (customId !== undefined && this.out.consumers.some((c) => c.custom_id === customId)) {
      this.errors.push(
        `in 'consumers': in '${username ?? customId}': uniqueness violation: 'consumers' entity with custom_id set to '${customId}' already declared`,
      );
    }
    const consumer: ConsumerEntity = {
      id: r.string('id') ?? kongDeclarativeId('consumers', username),
      username,
      custom_id: customId,
      tags: r.strings('tags'),
      created_at: Math.floor(Date.now() / 1000),
    };
    this.out.consumers.push(consumer);
    r.list('keyauth_credentials').forEach((c, i) =>
      this.credential(c, `${path}.keyauth_credentials[${i}]`, consumer),
    );
    this.nestedPlugins(r, path, { consumer });
  }

  private credential(obj: Obj, path: string, consumer: ConsumerEntity): void {
    const r = new FieldReader(obj, path, this.errors);
    r.allowOnly(['id', 'key', 'tags', 'ttl', 'consumer']);
    const key = r.string('key', true);
    if (key === undefined) return;
    if (this.out.keyauthCredentials.some((k) => k.key === key))
      r.fail('key', 'UNIQUE violation: key already declared');
    const cred: KeyAuthCredentialEntity = {
      id: r.string('id') ?? kongDeclarativeId('keyauth_credentials', undefined),
      key,
      consumer: { id: consumer.id },
      tags: r.strings('tags'),
      created_at: Math.floor(Date.now() / 1000),
    };
    this.out.keyauthCredentials.push(cred);
  }

  private nestedPlugins(r: FieldReader, path: string, scope: Scope): void {
    r.list('plugins').forEach((p, i) =>
      this.pendingPlugins.push({ obj: p, path: `${path}.plugins[${i}]`, scope, refs: {} }),
    );
  }

  private findBy<T extends { id: string }>(
    list: T[],
    ref: string,
    nameOf: (t: T) => string | undefined,
  ): T | undefined {
    return (
      list.find((t) => t.id === ref || (!isUuid(ref) && nameOf(t) === ref)) ??
      list.find((t) => nameOf(t) === ref)
    );
  }

  private resolve(): void {
    for (const { route, serviceRef, path } of this.pendingRoutes) {
      const svc = this.findBy(this.out.services, serviceRef, (s) => s.name);
      if (!svc) this.errors.push(`${path}.service: no service named or with id '${serviceRef}'`);
      else route.service = { id: svc.id };
    }
    for (const { cred, consumerRef, path } of this.pendingCreds) {
      const consumer = this.findBy(
        this.out.consumers,
        consumerRef,
        (c) => c.username ?? c.custom_id,
      );
      if (!consumer)
        this.errors.push(`${path}.consumer: no consumer named or with id '${consumerRef}'`);
      else this.credential(cred, path, consumer);
    }
    for (const pending of this.pendingPlugins) this.plugin(pending);
  }

  private plugin({ obj, path, scope, refs }: PendingPlugin): void {
    const r = new FieldReader(obj, path, this.errors);
    r.allowOnly([
      'id',
      'name',
      'config',
      'enabled',
      'protocols',
      'tags',
      'instance_name',
      'ordering',
      ...(Object.keys(scope).length ? [] : ['service', 'route', 'consumer']),
    ]);
    if (obj.ordering !== undefined)
      r.fail('ordering', 'dynamic plugin ordering is Kong Enterprise only');
    const name = r.string('name', true);
    if (name === undefined) return;
    const s: Scope = { ...scope };
    if (refs.service)
      s.service =
        this.findBy(this.out.services, refs.service, (x) => x.name) ??
        r.fail('service', `no service named or with id '${refs.service}'`);
    if (refs.route)
      s.route =
        this.findBy(this.out.routes, refs.route, (x) => x.name) ??
        r.fail('route', `no route named or with id '${refs.route}'`);
    if (refs.consumer)
      s.consumer =
        this.findBy(this.out.consumers, refs.consumer, (x) => x.username ?? x.custom_id) ??
        r.fail('consumer', `no consumer named or with id '${refs.consumer}'`);
    // A plugin nested under a route applies to that route only (not route+service).
    const service = s.route ? undefined : s.service;
    const label = [
      s.route ? `route '${s.route.name ?? s.route.id}'` : '',
      service ? `service '${service.name ?? service.id}'` : '',
      s.consumer
        ? `consumer '${s.consumer.username ?? s.consumer.custom_id ?? s.consumer.id}'`
        : '',
    ].filter(Boolean);
    const plugin: PluginEntity = {
      id:
        r.string('id') ??
        stableId(
          'plugins',
          `${name}:${s.route?.id ?? ''}:${service?.id ?? ''}:${s.consumer?.id ?? ''}`,
        ),
      name,
      enabled: r.bool('enabled', true),
      rawConfig: obj.config,
      config: {},
      route: s.route ? { id: s.route.id } : undefined,
      service: service ? { id: service.id } : undefined,
      consumer: s.consumer ? { id: s.consumer.id } : undefined,
      protocols: r.strings('protocols') ?? DEFAULT_PLUGIN_PROTOCOLS,
      scopeLabel: label.length ? `on ${label.join(', ')}` : '(global)',
    };
    // kong/db/schema/entities/plugins.lua: cache_key = name, route, service, consumer -> unique
    const dup = this.out.plugins.find(
      (p) =>
        p.name === name &&
        p.route?.id === plugin.route?.id &&
        p.service?.id === plugin.service?.id &&
        p.consumer?.id === plugin.consumer?.id,
    );
    if (dup)
      this.errors.push(
        `${path}: UNIQUE violation: plugin '${name}' ${plugin.scopeLabel} is declared twice`,
      );
    this.out.plugins.push(plugin);
  }
}

/** Reads kong.yml (a path) or an already parsed object. Throws ConfigError naming every problem. */
export function readDeclarative(config: string | object): DeclarativeConfig {
  let doc: unknown = config;
  if (typeof config === 'string') {
    let text: string;
    try {
      text = readFileSync(config, 'utf8');
    } catch (e) {
      throw new ConfigError([`cannot read ${config}: ${(e as Error).message}`]);
    }
    try {
      doc = parseYaml(text);
    } catch (e) {
      throw new ConfigError([`${config}: YAML parse error: ${(e as Error).message}`]);
    }
  }
  return new DeclarativeReader().read(doc);
}
