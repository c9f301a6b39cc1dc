/**
 * Operator chargeback: per-tenant, per-model totals of the token-meter ledger for a period.
 *
 *   npm run chargeback -- --from 2026-11-01 --to 2026-12-01 --format csv|json
 *                         [--redis redis://127.0.0.1:6379] [--namespace kta] [--period month]
 *
 * `--from` inclusive, `--to` exclusive (ISO dates or times, UTC); `--period` must be the
 * token-meter `period` the ledger was written with.
 */
import { parseArgs } from 'node:util';
import { closeAllRedis, createRedis, waitForRedis } from '../lib/redis/client';
import { createKeyspace } from '../lib/redis/keys';
import { chargeback, toCsv } from '../plugins/token-meter/chargeback';
import type { Period } from '../plugins/token-meter/config';

function fail(message: string): never {
  process.stderr.write(`chargeback: ${message}\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      from: { type: 'string' },
      to: { type: 'string' },
      format: { type: 'string', default: 'csv' },
      redis: { type: 'string', default: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
      namespace: { type: 'string', default: 'kta' },
      period: { type: 'string', default: 'month' },
    },
  });
  const from = Date.parse(values.from ?? '');
  const to = Date.parse(values.to ?? '');
  if (!Number.isFinite(from) || !Number.isFinite(to) || to <= from) {
    fail('--from and --to must be dates (UTC), --to after --from');
  }
  if (values.format !== 'csv' && values.format !== 'json') fail('--format must be csv or json');
  const period = values.period as Period;
  if (!['month', 'day', 'hour'].includes(period)) fail('--period must be month, day or hour');
  // The plugins' client: a Redis Cluster URL (`?cluster=1`) reads every master's keys.
  const redis = createRedis({ url: values.redis as string, commandTimeoutMs: 5000 });
  await waitForRedis(redis, 5000);
  try {
    const rows = await chargeback(redis, createKeyspace(values.namespace), period, from, to);
    process.stdout.write(
      values.format === 'json'
        ? `${JSON.stringify({ from: new Date(from).toISOString(), to: new Date(to).toISOString(), rows }, null, 2)}\n`
        : `${toCsv(rows)}\n`,
    );
  } finally {
    await closeAllRedis();
  }
}

main().catch((e: unknown) => fail(e instanceof Error ? e.message : String(e)));
