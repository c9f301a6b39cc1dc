import test from 'ava';
import { flushNotices, hasNotices, MAX_KEPT, notify } from '../../lib/pdk/notices';
import { guardPhase } from '../../lib/plugin/phase';
import type { KongPdk } from '../../lib/pdk/kong';

function fakeKong(): { kong: KongPdk; warned: string[] } {
  const warned: string[] = [];
  const kong = {
    log: {
      warn: (m: string) => {
        warned.push(m);
        return Promise.resolve();
      },
      err: () => Promise.resolve(),
    },
  } as unknown as KongPdk;
  return { kong, warned };
}

// One test: the kept notices are module state.
test.serial(
  'notices are kept, handed over once per log phase, bounded, and never in access',
  async (t) => {
    const quiet = process.stderr.write.bind(process.stderr);
    process.stderr.write = (() => true) as typeof process.stderr.write;
    try {
      const { kong, warned } = fakeKong();
      await flushNotices(kong);
      t.deepEqual(warned, [], 'nothing kept, no call');

      notify('first');
      notify('second');
      t.true(hasNotices());
      // An access phase (the response not yet sent) never hands them over: no request waits.
      await guardPhase(kong, 'test', 'access', async () => undefined);
      t.deepEqual(warned, []);
      // A log phase does, in one call, and then they are gone.
      await guardPhase(kong, 'test', 'log', async () => undefined, { afterResponse: true });
      t.deepEqual(warned, ['first\nsecond']);
      t.false(hasNotices());

      // A failed log phase still hands them over.
      notify('third');
      await guardPhase(
        kong,
        'test',
        'log',
        async () => {
          throw new Error('boom');
        },
        { afterResponse: true },
      );
      t.is(warned[1], 'third');

      // Bounded: past MAX_KEPT they are counted.
      for (let i = 0; i < MAX_KEPT + 7; i++) notify(`n${i}`);
      await flushNotices(kong);
      const lines = (warned[2] ?? '').split('\n');
      t.is(lines.length, MAX_KEPT + 1);
      t.is(lines[MAX_KEPT], "(7 more notices, on the plugin server's stderr)");
    } finally {
      process.stderr.write = quiet;
    }
  },
);
