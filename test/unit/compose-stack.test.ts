/**
 * What can be checked of docker-compose.yml without a docker engine: Kong's environment as the
 * entrypoint builds it (docker/kong-secrets.sh then docker/kong-pluginservers.sh) against the
 * built plugin-server directories and kong.yml, the secrets kept out of kong.yml and the
 * compose file, Redis's AOF, and the Prometheus/Grafana provisioning. (`docker-compose config`
 * and promtool run in .ci/run; test/plugins/monitoring.test.ts runs the monitoring for real.)
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';

const ROOT = path.resolve(__dirname, '..', '..');
const read = (p: string): string => readFileSync(path.join(ROOT, p), 'utf8');

interface Service {
  image?: string;
  build?: unknown;
  command?: string[] | string;
  environment?: Record<string, string>;
  entrypoint?: string[];
  secrets?: string[];
  volumes?: string[];
  ports?: string[];
  network_mode?: string;
}
const compose = parse(read('docker-compose.yml')) as {
  services: Record<string, Service>;
  secrets: Record<string, { file: string }>;
};
const kongYml = parse(read('kong.yml')) as {
  plugins: Array<{ name: string; config?: Record<string, unknown> }>;
};
const kong = compose.services.kong as Service;
const ours = readdirSync(path.join(ROOT, 'plugins')).sort();

/** Every environment variable kong.yml tells a plugin to read a secret from. */
function secretVariables(): string[] {
  const out = new Set<string>();
  const visit = (v: unknown, key: string): void => {
    if (typeof v === 'string') {
      if (/_env$/.test(key)) out.add(v);
      const m = /^env:([A-Za-z_][A-Za-z0-9_]*)$/.exec(v);
      if (m) out.add(m[1] as string);
    } else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) visit(x, k);
    }
  };
  for (const p of kongYml.plugins) visit(p.config, '');
  return [...out].sort();
}

test('kong.yml names its secrets (env or file), never their values', (t) => {
  const vars = secretVariables();
  t.true(
    vars.includes('KTA_CACHE_MASTER_KEY') && vars.includes('KTA_KNOWLEDGE_SECRET'),
    vars.join(),
  );
  const plaintext: string[] = [];
  const visit = (v: unknown, where: string): void => {
    if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) visit(x, `${where}.${k}`);
    } else if (
      /(secret|master_key|api_key|password|token)$/i.test(where) &&
      typeof v === 'string'
    ) {
      plaintext.push(where);
    }
  };
  for (const p of kongYml.plugins) visit(p.config, p.name);
  t.deepEqual(plaintext, []);
});

test('compose: every secret kong.yml names reaches the plugin servers from a secret file', (t) => {
  const passed = (kong.environment?.KTA_PLUGINSERVER_ENV ?? '').split(/\s+/);
  for (const v of secretVariables()) {
    t.true(passed.includes(v), `${v} must be in KTA_PLUGINSERVER_ENV (nginx clears the rest)`);
    t.falsy(kong.environment?.[v], `${v} must not be set in docker-compose.yml`);
  }
  t.true(read('docker/kong-secrets.sh').includes('KTA_PROVIDER_API_KEY'));
  for (const s of kong.secrets ?? []) {
    t.regex(compose.secrets[s]?.file ?? '', /^\.\/docker\/secrets\//, s);
  }
  t.true(
    read('.gitignore').split('\n').includes('docker/secrets/'),
    'secret files stay out of git',
  );
  // No literal secret in any service's environment (Grafana's comes from a file too).
  for (const [name, svc] of Object.entries(compose.services)) {
    if (name === 'minio') continue; // internal only, no published port (docs/operations.md)
    for (const [k, v] of Object.entries(svc.environment ?? {})) {
      if (/(SECRET|PASSWORD|API_KEY|MASTER_KEY)$/.test(k))
        t.fail(`${name}: ${k}=${v} in plain text`);
    }
  }
  t.is(
    compose.services.grafana?.environment?.GF_SECURITY_ADMIN_PASSWORD__FILE,
    '/run/secrets/grafana_admin_password',
  );
});

function generatedEnv(t: ExecutionContext, extra: Record<string, string>): Record<string, string> {
  const secrets = mkdtempSync(path.join(tmpdir(), 'kta-secrets-'));
  t.teardown(() => rmSync(secrets, { recursive: true, force: true }));
  writeFileSync(path.join(secrets, 'cache_master_key'), 'c'.repeat(64) + '\n');
  writeFileSync(path.join(secrets, 'knowledge_secret'), 'k'.repeat(64));
  writeFileSync(path.join(secrets, 'provider_api_key'), ''); // empty: not exported
  const dist = path.join(ROOT, 'dist', 'pluginservers');
  t.true(existsSync(dist), 'npm run build first');
  const dirs = readdirSync(dist).map((d) => path.join(dist, d));
  const out = execFileSync(
    'sh',
    ['-c', '. docker/kong-secrets.sh && . docker/kong-pluginservers.sh && env -0'],
    {
      cwd: ROOT,
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        KTA_SECRETS_DIR: secrets,
        KTA_PLUGINSERVER_DIRS: dirs.join(' '),
        KTA_PLUGINSERVER_CMD: `${process.execPath} ${PLUGINSERVER_BIN}`,
        KTA_SOCKET_DIR: '/usr/local/kong',
        KTA_PLUGINSERVER_ENV: kong.environment?.KTA_PLUGINSERVER_ENV ?? '',
        ...extra,
      },
    },
  );
  return Object.fromEntries(
    out
      .split('\0')
      .filter((e) => e.includes('='))
      .map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]),
  );
}

const PLUGINSERVER_BIN = path.join(ROOT, 'node_modules', 'kong-pdk', 'bin', 'kong-js-pluginserver');

function dumpNames(command: string): string[] {
  const dump = JSON.parse(execFileSync('sh', ['-c', command], { encoding: 'utf8' })) as Array<{
    Name: string;
  }>;
  return dump.map((p) => p.Name);
}

test('compose: the entrypoint declares every plugin of kong.yml to Kong, each query answering for its plugin', (t) => {
  const entry = (kong.entrypoint ?? []).join(' ');
  t.regex(entry, /kong-secrets\.sh.*kong-pluginservers\.sh.*docker-start/);
  const dockerfile = read('docker/Dockerfile');
  t.regex(dockerfile, /COPY docker\/kong-secrets\.sh \/docker-entrypoint\.d\/kong-secrets\.sh/);
  t.regex(dockerfile, /COPY docker\/kong-pluginservers\.sh \/docker-entrypoint\.d\//);

  const env = generatedEnv(t, { KTA_PLUGINSERVER_MODE: 'per-plugin' });
  t.is(env.KTA_CACHE_MASTER_KEY, 'c'.repeat(64), 'the secret file, newline trimmed');
  t.is(env.KTA_KNOWLEDGE_SECRET, 'k'.repeat(64));
  t.false('KTA_PROVIDER_API_KEY' in env, 'an empty secret file sets nothing');
  t.is(
    env.KONG_NGINX_MAIN_ENV,
    (kong.environment?.KTA_PLUGINSERVER_ENV ?? '').split(/\s+/).join('; env '),
  );
  const inKongYml = [...new Set(kongYml.plugins.map((p) => p.name))].filter((n) =>
    ours.includes(n),
  );
  t.deepEqual(inKongYml.sort(), ours, 'kong.yml runs every plugin of the repo');
  t.deepEqual(env.KONG_PLUGINS?.split(',').sort(), ['bundled', ...ours].sort());
  t.deepEqual(env.KONG_PLUGINSERVER_NAMES?.split(',').sort(), ours);
  for (const name of ours) {
    const v = name.toUpperCase().replace(/-/g, '_');
    t.is(env[`KONG_PLUGINSERVER_${v}_SOCKET`], `/usr/local/kong/${name}.sock`);
    t.regex(
      env[`KONG_PLUGINSERVER_${v}_START_CMD`] ?? '',
      new RegExp(`--sock-name ${name}\\.sock$`),
    );
    t.deepEqual(
      dumpNames(env[`KONG_PLUGINSERVER_${v}_QUERY_CMD`] ?? ''),
      [name],
      `${name}: Kong takes the first plugin of --dump-all-plugins`,
    );
  }
});

test('compose: by default one co-hosted plugin server serves the whole chain; every entry shares its socket', (t) => {
  const env = generatedEnv(t, { KTA_CHAIN_DIR: path.join(ROOT, 'dist', 'chain') });
  t.deepEqual(env.KONG_PLUGINSERVER_NAMES?.split(',').sort(), ours);
  const starters = ours.filter(
    (n) => `KONG_PLUGINSERVER_${n.toUpperCase().replace(/-/g, '_')}_START_CMD` in env,
  );
  t.is(
    starters.length,
    1,
    'exactly one entry starts the process; Kong treats the others as external',
  );
  t.is(env.KTA_CHAIN_STARTER, starters[0]);
  const start =
    env[
      `KONG_PLUGINSERVER_${(starters[0] as string).toUpperCase().replace(/-/g, '_')}_START_CMD`
    ] ?? '';
  t.regex(start, /-d \S+\/dist\/chain -p \/usr\/local\/kong --sock-name kta-chain\.sock$/);
  t.deepEqual(
    dumpNames(start.replace(/ -p .*$/, ' --dump-all-plugins')).sort(),
    ours,
    'the co-hosted process serves every plugin of the chain',
  );
  for (const name of ours) {
    const v = name.toUpperCase().replace(/-/g, '_');
    t.is(env[`KONG_PLUGINSERVER_${v}_SOCKET`], '/usr/local/kong/kta-chain.sock');
    t.deepEqual(dumpNames(env[`KONG_PLUGINSERVER_${v}_QUERY_CMD`] ?? ''), [name]);
  }
});

test('compose: an unknown plugin-server mode is refused', (t) => {
  const err = t.throws(() => generatedEnv(t, { KTA_PLUGINSERVER_MODE: 'both' }));
  t.regex(String((err as { stderr?: unknown }).stderr ?? err?.message), /chain or per-plugin/);
});

test('compose: Kong has the JSON error template; Redis keeps an append-only file on a volume', (t) => {
  t.is(kong.environment?.KONG_ERROR_TEMPLATE_JSON, '/kong/error-template.json');
  t.is(kong.environment?.KONG_ERROR_DEFAULT_TYPE, 'application/json');
  t.true(kong.volumes?.includes('./docker/error-template.json:/kong/error-template.json:ro'));
  const redis = compose.services.redis as Service;
  const cmd = (redis.command as string[]).join(' ');
  t.regex(cmd, /--appendonly yes/);
  t.regex(cmd, /--dir \/data/);
  t.true(redis.volumes?.some((v) => v.endsWith(':/data')));
  // The sidecars kong.yml reaches at 127.0.0.1 share Kong's network namespace.
  for (const s of ['redis', 'milvus', 'mock-upstream', 'prometheus', 'alertmanager']) {
    t.is(compose.services[s]?.network_mode, 'service:kong', s);
  }
  for (const [name, svc] of Object.entries(compose.services)) {
    if (svc.image) t.regex(svc.image, /:[\w.-]+$/, `${name}: a pinned image tag`);
    if (svc.image) t.notRegex(svc.image, /:latest$/, name);
  }
});

test('compose: Prometheus gets the generated config and rules; Grafana the datasource and dashboard', (t) => {
  const prom = compose.services.prometheus as Service;
  t.true(prom.volumes?.includes('./docker/prometheus:/etc/prometheus:ro'));
  t.true((prom.command as string[]).includes('--config.file=/etc/prometheus/prometheus.yml'));
  // Alertmanager: the repo's config, on the address the generated Prometheus config names.
  const am = compose.services.alertmanager as Service;
  t.true(am.volumes?.includes('./docker/alertmanager:/etc/alertmanager:ro'));
  const amCommand = am.command as string[];
  t.true(amCommand.includes('--config.file=/etc/alertmanager/alertmanager.yml'));
  t.true(amCommand.includes('--web.listen-address=0.0.0.0:9093'));
  t.true(amCommand.includes('--cluster.listen-address='), 'one instance, no gossip port');
  t.regex(read('docker/prometheus/prometheus.yml'), /alertmanagers:[\s\S]*- 127\.0\.0\.1:9093/);
  const grafana = compose.services.grafana as Service;
  const mounts = new Map(
    (grafana.volumes ?? []).map((v) => [v.split(':')[0] as string, v.split(':')[1] as string]),
  );
  t.is(mounts.get('./docker/grafana/provisioning'), '/etc/grafana/provisioning');
  const provider = parse(read('docker/grafana/provisioning/dashboards/dashboards.yml')) as {
    providers: Array<{ options: { path: string } }>;
  };
  t.is(mounts.get('./docker/grafana/dashboards'), provider.providers[0]?.options.path);
  const ds = parse(read('docker/grafana/provisioning/datasources/prometheus.yml')) as {
    datasources: Array<{ type: string; url: string; uid: string }>;
  };
  // Prometheus listens in Kong's namespace: Grafana reaches it through the kong service.
  t.deepEqual(
    ds.datasources.map((d) => [d.type, d.url]),
    [['prometheus', 'http://kong:9090']],
  );
  t.true(kong.ports?.some((p) => p.endsWith(':9090')));
  const dashboard = JSON.parse(read('docker/grafana/dashboards/tenants.json')) as {
    uid: string;
    templating: { list: Array<{ name: string }> };
  };
  t.deepEqual(
    dashboard.templating.list.map((v) => v.name),
    ['datasource', 'tenant'],
    'a tenant variable (and the datasource)',
  );
});
