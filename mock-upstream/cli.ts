/**
 * Runs the mock upstream as a process (benchmarks, `npm start`):
 *
 *   node dist/mock-upstream/cli.js --port 9000 [--host 127.0.0.1] [--latency-ms N]
 *       [--capacity N] [--rate-per-second N] [--rate-burst N] [--over-capacity queue|reject]
 *       [--embedding-dim N]
 *
 * Prints one line, `mock-upstream ready <url>`, once listening (scripts wait for it), and
 * exits 0 after closing on SIGINT or SIGTERM. Knobs can be changed later via `/__mock/config`.
 */
import { parseArgs } from 'node:util';
import { startMockUpstream, type StartOptions } from './index';

function toNumber(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n))
    throw new RangeError(`--${flag} must be a number, got ${v}`);
  return n;
}

function parseCli(argv: string[]): StartOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      'latency-ms': { type: 'string' },
      capacity: { type: 'string' },
      'rate-per-second': { type: 'string' },
      'rate-burst': { type: 'string' },
      'over-capacity': { type: 'string' },
      'embedding-dim': { type: 'string' },
    },
    strict: true,
  });
  const over = values['over-capacity'];
  if (over !== undefined && over !== 'queue' && over !== 'reject') {
    throw new RangeError(`--over-capacity must be queue or reject, got ${over}`);
  }
  return {
    host: values.host ?? '127.0.0.1',
    port: toNumber('port', values.port) ?? 0,
    latencyMs: toNumber('latency-ms', values['latency-ms']),
    capacity: toNumber('capacity', values.capacity),
    ratePerSecond: toNumber('rate-per-second', values['rate-per-second']),
    rateBurst: toNumber('rate-burst', values['rate-burst']),
    overCapacity: over,
    embeddingDim: toNumber('embedding-dim', values['embedding-dim']),
  };
}

async function main(): Promise<void> {
  const mock = await startMockUpstream(parseCli(process.argv.slice(2)));
  process.stdout.write(`mock-upstream ready ${mock.url}\n`);
  const stop = (): void => {
    mock.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((e: unknown) => {
  process.stderr.write(`mock-upstream: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(2);
});
