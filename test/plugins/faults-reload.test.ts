/**
 * A new configuration while requests are in flight, kong.yml's chain (test/helpers/fault-door.ts):
 * 20 concurrent requests held at the upstream while (1) a new declarative config is POSTed to
 * Kong's Admin API /config, with tenant C added and tenant B removed (their consumers and their
 * tenant-ratelimit overrides: the plugin's config changes, so the plugin server gets new
 * instances), then (2) `kong reload` with the file changed back (B added, C removed). After
 * each: the requests in flight finish, the removed tenant is refused (401), the added one
 * served, and checkAfterFault holds the ledger, the leases and the tenants' answers.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { kongEnv, locateKong } from '../../kong-runner/locate';
import type { KongGateway } from '../../kong-runner/index';
import type { HarnessGateway } from '../../harness/gateway';
import { Closers, gatewayKind, send } from '../helpers/frontdoor';
import {
  ask,
  checkAfterFault,
  randomQuestion,
  startFaultDoor,
  type FaultDoor,
  type FaultTenant,
  type Outcome,
} from '../helpers/fault-door';
import { freePort } from '../helpers/upstreams';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Doc {
  consumers: Array<{ custom_id?: string }>;
  plugins: Array<{ name: string; config?: { tenants?: Record<string, unknown> } }>;
}

/** The config with `add`'s consumer and override in, `drop`'s out. */
function variant(base: Doc, add: FaultTenant, drop: FaultTenant, consumers: Doc['consumers']): Doc {
  const doc = structuredClone(base);
  doc.consumers = [
    ...doc.consumers.filter((c) => c.custom_id !== drop.id && c.custom_id !== add.id),
    ...consumers.filter((c) => c.custom_id === add.id),
  ];
  for (const p of doc.plugins) {
    if (p.name !== 'tenant-ratelimit' || !p.config?.tenants) continue;
    const tenants = p.config.tenants;
    tenants[add.id] = tenants[drop.id] ?? tenants[add.id];
    delete tenants[drop.id];
  }
  return doc;
}

function kongCli(args: string[]): Promise<string> {
  const kong = locateKong();
  if (!kong) throw new Error('no Kong installed');
  const script = `${kong.envScript ? `. '${kong.envScript}' >/dev/null 2>&1 && ` : ''}exec '${kong.bin}' ${args.map((a) => `'${a}'`).join(' ')}`;
  return new Promise((resolve, reject) =>
    execFile(
      'bash',
      ['-c', script],
      { env: kongEnv(process.env), timeout: 60_000 },
      (e, out, err) =>
        e ? reject(new Error(`kong ${args.join(' ')}: ${err || out || e.message}`)) : resolve(out),
    ),
  );
}

/** 20 requests at once, held at the upstream while `change` runs; their outcomes. */
async function inFlight(d: FaultDoor, tenants: FaultTenant[], change: () => Promise<void>) {
  d.upstream.configure({ latencyMs: 2500 });
  const held = Array.from({ length: 20 }, (_, i) =>
    ask(d, tenants[i % tenants.length] as FaultTenant, randomQuestion(), i % 3 === 0),
  );
  const until = Date.now() + 20_000;
  const chats = () => d.upstream.received.filter((r) => r.path.startsWith('/v1/chat')).length;
  const before = chats();
  while (chats() < before + 20 && Date.now() < until) await sleep(25);
  await change();
  const changedAt = Date.now();
  d.upstream.configure({ latencyMs: 0 });
  return { outcomes: await Promise.all(held), changedAt };
}

/** Asks until `tenant` gets `status` (the new config in force); how long that took. */
async function until(d: FaultDoor, tenant: FaultTenant, status: number, probes: Outcome[]) {
  const start = Date.now();
  for (;;) {
    const o = await ask(d, tenant, randomQuestion(), false);
    probes.push(o);
    if (o.status === status) return Date.now() - start;
    if (Date.now() - start > 30_000) throw new Error(`${tenant.id}: still ${o.status} ${o.code}`);
    await sleep(100);
  }
}

const onKong = gatewayKind() === 'kong';

test.serial(
  'a new declarative config with 20 requests in flight, a tenant added and one removed; and `kong reload`',
  async (t) => {
    const closers = new Closers();
    t.teardown(() => closers.closeAll());
    const admin = await freePort();
    const d = await startFaultDoor(closers.add, {
      ...(onKong ? { kongConf: { admin_listen: `127.0.0.1:${admin}` } } : {}),
    });
    const C: FaultTenant = { id: `fc${d.A.id.slice(2)}`, key: '', plan: 'free' };
    C.key = `${C.id}-key`;
    // The real Kong: the config as Kong read it (its prefix); the harness: as the door built it.
    const file = onKong ? path.join((d.gateway as KongGateway).prefix, 'kong.json') : '';
    const base = (
      onKong ? JSON.parse(readFileSync(file, 'utf8')) : structuredClone(d.config)
    ) as Doc;
    /** Kong's Admin API POST /config; the harness's equivalent (HarnessGateway.reload). */
    const apply = async (doc: Doc): Promise<void> => {
      if (!onKong) return (d.gateway as HarnessGateway).reload(structuredClone(doc));
      const r = await send(`http://127.0.0.1:${admin}/config`, { method: 'POST', body: doc });
      t.is(r.status, 201, r.text.slice(0, 500));
    };
    const withC = {
      ...base,
      consumers: [
        ...base.consumers,
        {
          username: `${C.id}-app`,
          custom_id: C.id,
          tags: ['plan:free'],
          keyauth_credentials: [{ key: C.key }],
        },
      ],
    };
    const probes: Outcome[] = [];
    t.is((await ask(d, C, randomQuestion(), false)).status, 401, 'C is not a tenant yet');

    // 1. POST /config: C in, B out.
    const posted = await inFlight(d, [d.A, d.B], () =>
      apply(variant(withC, C, d.B, withC.consumers)),
    );
    const toC = await until(d, C, 200, probes);
    const offB = await until(d, d.B, 401, probes);
    t.log({ posted: [...new Set(posted.outcomes.map((o) => `${o.status} ${o.code}`))], toC, offB });
    t.true(
      posted.outcomes.every((o) => o.status === 200 && o.complete),
      'the 20 in flight finish',
    );

    // `kong reload` exists on the real Kong only (the harness has no nginx to HUP); there the
    // change back (B in, C out) goes through the same POST, so both gateways end alike.
    let lastChange = posted.changedAt;
    let reloadedOutcomes: Outcome[] = [];
    const fileDoc = variant(withC, d.B, C, base.consumers);
    if (onKong) {
      // 2. `kong reload` with the file changed back (B in, C out): Kong 3.9 does not read the file
      // again (kong/init.lua: the `kong` shared dict, which a reload keeps, says a declarative
      // config was loaded), so the POSTed config stays in force; the workers are replaced.
      const pid = d.gateway.pluginServerInfo('tenant-auth').pid;
      writeFileSync(file, JSON.stringify(fileDoc));
      const reloaded = await inFlight(d, [d.A, C], async () => {
        await kongCli(['reload', '-p', (d.gateway as KongGateway).prefix]);
      });
      const afterReload = await until(d, d.A, 200, probes);
      t.is((await ask(d, C, randomQuestion(), false)).status, 200, 'C still in force');
      t.is((await ask(d, d.B, randomQuestion(), false)).status, 401, 'the file was not read again');
      t.log({
        reloaded: [...new Set(reloaded.outcomes.map((o) => `${o.status} ${o.code}`))],
        afterReload,
        pluginServer: { before: pid, after: d.gateway.pluginServerInfo('tenant-auth').pid },
      });
      t.true(
        reloaded.outcomes.every((o) => o.status === 200 && o.complete),
        'the 20 in flight finish',
      );

      // 3. The way to change a DB-less node's config: POST it (here the file's).
      await apply(fileDoc);
      const toB = await until(d, d.B, 200, probes);
      const offC = await until(d, C, 401, probes);
      t.log({ toB, offC });
      lastChange = reloaded.changedAt;
      reloadedOutcomes = reloaded.outcomes;
    } else {
      lastChange = Date.now();
      await apply(fileDoc);
      await until(d, d.A, 200, probes);
      await until(d, d.B, 200, probes);
      await until(d, C, 401, probes);
    }

    // The tenants the checks know (A, B) over the whole drill; C's requests are in `probes`.
    const all = [...posted.outcomes, ...reloadedOutcomes, ...probes].filter((o) => o.tenant !== C);
    await checkAfterFault(t, d, all, {
      allowed: [],
      restoredAt: lastChange,
      recoveryBoundMs: 10_000,
    });
  },
);
