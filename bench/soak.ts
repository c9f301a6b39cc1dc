/**
 * `[SOAK_REQUESTS=N SOAK_RATE=R] npm run soak` (scripts/bench.sh soak; not part of a plain
 * `npm run bench`: it takes about 20 minutes): the soak of the whole chain (issue 22 part 4).
 * Three nodes of the repo's kong.yml (the real Kong 3.9.3 with 1, 2 and 4 nginx workers when
 * installed, else three harness gateways), one Redis (the Redis Cluster when REDIS_CLUSTER_URL
 * is set), Milvus, one mock upstream; N requests (100,000 by default) of a mix at R a second
 * (open loop), spread over the nodes: chat misses with retrieval of each tenant's own seeded
 * knowledge, exact cache hits, streams, 429s over a tenant's limit, 401s, 400s, a model-tier
 * rewrite, model lists (test/helpers/soak-chain.ts, shared with the short variant in CI,
 * test/plugins/soak-short.test.ts).
 *
 * Samples the RSS of every process of the three nodes every 2 s and each plugin server's
 * event-loop lag p99 every 5 s. Fails (exit 1) when a node's process's RSS band rises from the
 * first half of the run after the warm-up to the second (or above it when idle), an event stays
 * open, a plugin server wrote an error line in Kong's log, or a tenant's ledger differs from
 * what the upstream answered by one token; writes its figures to docs/benchmarks.md.
 */
import os from 'node:os';
import { locateKong } from '../kong-runner/index';
import { Closers } from '../test/helpers/frontdoor';
import {
  MIX,
  runMixedLoad,
  retrievalSeen,
  settleAndCompare,
  startSoakCluster,
  warmUp,
  OVER_LIMIT_RPM,
  RESERVATION_TTL_S,
  SOAK_WORKERS,
  type LedgerRow,
} from '../test/helpers/soak-chain';
import {
  errorLines,
  LagWatch,
  lagTargets,
  pendingEvents,
  RssBands,
  rssRows,
  soakProcesses,
  STRETCHES,
} from '../test/helpers/soak-watch';
import { table, writeSection } from './report';

function arg(name: string, fallback: number): number {
  const v = Number(process.env[`SOAK_${name.toUpperCase()}`]);
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

const REQUESTS = arg('requests', 100_000);
const RATE = arg('rate', 80);
const RSS_SAMPLE_MS = 2000;
const LAG_SAMPLE_MS = 5000;
const IDLE_MS = 20_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const load1 = () => os.loadavg()[0]?.toFixed(1) ?? '?';
const say = (line: string) => process.stdout.write(`soak: ${line}\n`);

function ledgerRows(rows: LedgerRow[]): Array<Array<string | number>> {
  return rows.map((r) => [
    r.tenant.replace(/-[0-9a-f]{6}$/, ''),
    r.upstream.answers,
    `${r.upstream.prompt} / ${r.upstream.completion}`,
    r.ledger.metered,
    `${r.ledger.prompt} / ${r.ledger.completion}`,
    `${r.clientHits} / ${r.ledger.hits} (${r.ledger.hitTokens} tokens)`,
    r.ledger.estimated,
    r.ledger.duplicates,
    `${r.reservationsLeft} (${r.reservationsExpired} freed by TTL)`,
    r.ledger.metered === r.upstream.answers &&
    r.ledger.prompt === r.upstream.prompt &&
    r.ledger.completion === r.upstream.completion &&
    r.ledger.hits === r.clientHits &&
    r.ledger.hitTokens === 0
      ? 'equal'
      : '**differs**',
  ]);
}

async function main(): Promise<void> {
  process.env.GATEWAY ??= locateKong() ? 'kong' : 'harness';
  const t0 = Date.now();
  const closers = new Closers();
  try {
    const loadAtStart = load1();
    say(`starting three nodes (${process.env.GATEWAY}); load average ${loadAtStart}`);
    const cluster = await startSoakCluster(closers.add);
    await warmUp(cluster);
    const procs = soakProcesses(cluster);
    const rss = new RssBands(procs);
    const targets = lagTargets(cluster);
    const lag = new LagWatch(targets);
    await lag.sample(false);
    const rssTimer = setInterval(() => rss.sample(), RSS_SAMPLE_MS);
    const lagTimer = setInterval(() => void lag.sample(), LAG_SAMPLE_MS);
    const loads: string[] = [];
    let reported = 0;
    const since = Date.now();
    say(`${REQUESTS} requests at ${RATE}/s through ${cluster.nodes.length} nodes`);
    const load = await runMixedLoad(cluster, {
      requests: REQUESTS,
      ratePerSecond: RATE,
      onDone: (done) => {
        rss.enter(done >= 0.55 * REQUESTS ? 2 : done >= 0.1 * REQUESTS ? 1 : 0);
        if (done - reported >= REQUESTS / 10) {
          reported = done;
          loads.push(load1());
          say(
            `${done} done, ${((Date.now() - since) / 1000).toFixed(0)} s, load ${load1()}; RSS MB: ${procs
              .filter((p) => p.judged && /plugin server/.test(p.label))
              .map(
                (p) =>
                  `${p.label.split(':')[0]}=${rss.bands.get(p.pid)?.[rss.stretch]?.max.toFixed(0)}`,
              )
              .join(' ')}`,
          );
        }
      },
    });
    clearInterval(lagTimer);
    await lag.sample();
    rss.enter(3);
    const idleFrom = Date.now();
    const check = await settleAndCompare(cluster, load, since);
    await sleep(Math.max(0, IDLE_MS - (Date.now() - idleFrom)));
    rss.sample();
    clearInterval(rssTimer);
    const events = await pendingEvents(targets);
    const lines = errorLines(cluster);
    const seen = retrievalSeen(cluster);
    const loadAtEnd = load1();

    const growing = rss.growing();
    const open = events.filter((e) => e.open !== 0);
    const pluginErrors = lines ? [...lines.pluginServer] : [];
    const ok =
      growing.length === 0 && open.length === 0 && pluginErrors.length === 0 && check.exact;
    const statusLine = [...load.statuses.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([s, n]) => `${s === -1 ? 'connection error' : s}: ${n}`)
      .join(', ');
    const kinds = [...new Set(MIX)].map((k) => [
      k,
      MIX.filter((m) => m === k).length * 5,
      [...(load.byKind.get(k) ?? new Map<number, number>()).entries()]
        .sort((a, b) => a[0] - b[0])
        .map(([s, n]) => `${s}×${n}`)
        .join(', '),
    ]);
    const nodes =
      cluster.kind === 'kong'
        ? `three real Kong 3.9.3 nodes with ${SOAK_WORKERS.join(', ')} nginx workers, each with its own plugin server (the chain in one process)`
        : 'three harness gateways, each with its own plugin server';
    const redisKind = process.env.REDIS_CLUSTER_URL ? 'the Redis Cluster' : 'one Redis';
    const lagRows = lag
      .summary()
      .map((l) => [
        l.target.label,
        l.windows,
        l.medianMs.toFixed(1),
        `**${l.maxMs.toFixed(1)}**`,
        events.find((e) => e.target.pid === l.target.pid)?.open ?? '?',
      ]);
    const body = [
      '## Soak: 100,000 mixed requests through three nodes',
      '',
      `Command: \`SOAK_REQUESTS=${REQUESTS} SOAK_RATE=${RATE} npm run soak\` (bench/soak.ts; the mix and the`,
      'checks are test/helpers/soak-chain.ts and soak-watch.ts, shared with the short variant',
      "in CI, test/plugins/soak-short.test.ts). The repo's kong.yml on",
      `${nodes}, sharing ${redisKind}, Milvus (the run's own collections) and one mock`,
      'upstream, which sums the usage it answered per tenant. Three tenants of the run: one of',
      'plan pro and one of plan free, each with its own knowledge seeded in Milvus, and one of',
      `plan free limited to ${OVER_LIMIT_RPM} requests a minute. Changed from kong.yml for the run: budgets`,
      'and limits no soak reaches for the two served tenants, the upstream queue roomier, each',
      'process its own metrics ports, and the Milvus and embeddings deadlines of retrieval and the',
      "semantic cache raised to 8–10 s (kong.yml's 500 ms search deadline answers 503",
      '`retrieval_unavailable` now and then on this shared 2-core machine; the soak is about',
      'leaks and the bill). Open loop: request i starts at i / rate seconds through node i mod 3,',
      'whatever the answers before it do.',
      '',
      `${REQUESTS} requests in ${load.seconds.toFixed(0)} s (${(REQUESTS / load.seconds).toFixed(1)} req/s asked ${RATE}); starts late against the`,
      `schedule by p50 ${load.late.p50.toFixed(0)} ms, p99 ${load.late.p99.toFixed(0)} ms, max ${load.late.max.toFixed(0)} ms; at most ${load.maxInFlight} in flight. Load average`,
      `(1 min; 2 cores, shared with other agents' work): ${loadAtStart} at the start, ${loads.join(', ')} at`,
      `each tenth, ${loadAtEnd} at the end. Statuses: ${statusLine}.`,
      load.serverErrors.size > 0
        ? `The 5xx answers by error code: ${[...load.serverErrors].map(([k, n]) => `${k}: ${n}`).join(', ')}.`
        : 'No 5xx answer.',
      '',
      table(['kind (request i mod 20)', '% of the mix', 'statuses'], kinds),
      '',
      `Retrieval: of the mock's last 10,000 chat requests, ${[...seen].map(([t, n]) => `${n} of ${t.replace(/-[0-9a-f]{6}$/, '')}`).join(' and ')} carried the tenant's own fenced knowledge.`,
      '',
      "**The bill: ledger = upstream usage.** After the load, waited until every tenant's ledger",
      'held one entry per upstream answer and per cache hit and no reservation was left',
      `(${check.settleSeconds.toFixed(1)} s), then compared, per tenant, token-meter's ledger in Redis with what the`,
      'mock upstream answered (chat answers whose usage reached the client whole). The rule for',
      "cache hits is token-meter's README's: a hit is one ledger entry with `cache_hit = 1` and 0",
      'upstream tokens (the upstream never saw it). Reservations: none may be held once every',
      `request settled and the reservation TTL (${RESERVATION_TTL_S} s in this run) passed; one freed by its TTL is a`,
      'request whose log or release never came: the expiry sweep bills it as estimated (settled_by expiry).',
      '',
      table(
        [
          'tenant',
          'upstream answers',
          'upstream prompt / completion',
          'ledger entries (not hits)',
          'ledger prompt / completion',
          'hits: client saw / ledger',
          'estimated',
          'twice',
          'reservations left (freed by TTL)',
          '',
        ],
        ledgerRows(check.rows),
      ),
      '',
      check.untenanted === 0
        ? 'No chat reached the upstream without a tenant.'
        : `**${check.untenanted} chat answers reached the upstream without a tenant.**`,
      '',
      `**Event-loop lag** of every plugin-server process (prom-client's \`nodejs_eventloop_lag_p99_seconds\`, whose histogram restarts at each scrape: one p99 per ${LAG_SAMPLE_MS / 1000} s window during the load), in ms, and the events left open at the end (\`kta_pluginserver_pending_events\`):`,
      '',
      table(
        ['process', 'windows', 'median of window p99', 'max of window p99', 'open events'],
        lagRows,
      ),
      '',
      `**RSS** in MB of every process of the three nodes, sampled every ${RSS_SAMPLE_MS / 1000} s: the band (lowest–highest) it`,
      'moved in during each stretch. A garbage-collected process saws between collections, its ceiling',
      'set by when one ran; a leak lifts the floor (what each collection leaves) and keeps it up when',
      'idle. So each process is judged from the end of its own warm-up (its first busy sample, RSS',
      `${RssBands.busyText} over its ready value, plus ${RssBands.warmUpText}: an nginx worker first used half-way through warms`,
      'up then): the rest of the load cut in two halves, flat when the floor of the second half and the',
      `floor of the ${IDLE_MS / 1000} s idle pause are within ${RssBands.slackText} of the first half's. Ceilings are shown, not`,
      'judged. The shared services and this process (load generator and mock upstream) are shown, not judged.',
      '',
      table(
        [
          'process',
          'ready',
          ...STRETCHES,
          'judged from',
          'floor rise: second half / idle (ceiling) MB',
          'verdict',
        ],
        rssRows(rss),
      ),
      '',
      lines === undefined
        ? "Kong's error log: none (harness)."
        : lines.all.size === 0
          ? "Kong's error logs of the three nodes: no line at level error or above."
          : `Kong's error logs of the three nodes, lines at level error or above by message (the soak fails on one from a plugin server: ${pluginErrors.length} kinds):\n\n${table(
              ['lines', 'message', 'plugin server'],
              [...lines.all]
                .sort((a, b) => b[1] - a[1])
                .slice(0, 12)
                .map(([m, n]) => [n, `\`${m}\``, lines.pluginServer.has(m) ? 'yes' : 'no']),
            )}`,
      '',
      ok
        ? '**Ledger = upstream usage to the token for every tenant; every process of the three nodes is flat; no event left open; no plugin-server error line.**'
        : `**Failed: ${[
            ...(check.exact ? [] : ['the ledger differs from the upstream usage']),
            ...growing,
            ...open.map((e) => `events open in ${e.target.label}`),
            ...(pluginErrors.length
              ? [`${pluginErrors.length} kinds of plugin-server error line`]
              : []),
          ].join('; ')}.**`,
      '',
      `Whole run ${((Date.now() - t0) / 1000).toFixed(0)} s (three nodes started, knowledge seeded, warm-up, load, settlement, ${IDLE_MS / 1000} s idle).`,
    ].join('\n');
    writeSection('soak', body);
    process.stdout.write(`${body}\n`);
    say(ok ? 'passed' : 'FAILED');
    process.exitCode = ok ? 0 : 1;
  } finally {
    await closers.closeAll();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`soak failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(2);
});
