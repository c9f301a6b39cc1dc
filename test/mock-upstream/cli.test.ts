import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { getJson } from './_helpers';

const cli = path.resolve(__dirname, '../../mock-upstream/cli.ts');

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`the CLI prints one ready line, takes flags, and exits 0 on ${signal}`, async (t) => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        cli,
        '--port',
        '0',
        '--capacity',
        '2',
        '--latency-ms',
        '5',
        '--rate-per-second',
        '40',
        '--rate-burst',
        '3',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    t.teardown(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    const lines = createInterface({ input: child.stdout });
    const [first] = (await once(lines, 'line')) as [string];
    const match = /^mock-upstream ready (http:\/\/127\.0\.0\.1:\d+)$/.exec(first);
    t.truthy(match, first);
    const url = match?.[1] ?? '';
    t.like((await getJson(`${url}/__mock/config`)).body, {
      capacity: 2,
      latencyMs: 5,
      ratePerSecond: 40,
      rateBurst: 3,
    });

    const exited = once(child, 'exit');
    child.kill(signal);
    const [code] = (await exited) as [number | null];
    t.is(code, 0);
  });
}

test('the CLI refuses a bad flag value with exit code 2', async (t) => {
  const child = spawn(process.execPath, ['--import', 'tsx', cli, '--capacity', 'lots'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  t.is(code, 2);
  t.regex(stderr, /--capacity must be a number, got lots/);
});
