/**
 * The chain's one access phase, its Node half (lib/pluginserver/chain-access.ts): the owner asks
 * the snippet to merge (test/unit/chain-merge-snippet.test.ts is the Lua half), then runs each
 * merged plugin's access on its own event, in order, and stops at the first exit, after starting
 * every merged plugin's read-only `early` work first (tenant-cache's lookup); an instance
 * the process does not have undoes the merge before anything ran. Without the event handle
 * (kong-pdk's own PDK objects, the harness's tests) nothing is merged.
 */
import test from 'ava';
import {
  attachEvent,
  mergeNext,
  runMerged,
  runMergedLog,
  servedInstances,
  type ChainInstance,
} from '../../lib/pluginserver/chain-access';

function fakeEvent(answer: unknown) {
  const calls: string[] = [];
  let exited = false;
  const kong = attachEvent(
    {},
    {
      call: async (method: string, ...args: unknown[]) => {
        calls.push(`${method.replace('kong.ctx.shared.kta_pdk.', '')} ${JSON.stringify(args)}`);
        return method.endsWith('.chain') ? answer : null;
      },
      exited: () => exited,
    },
  );
  return { kong, calls, exit: () => (exited = true) };
}

function instance(name: string, ran: string[], onRun?: () => void): ChainInstance {
  return {
    name,
    resetExpireTs: () => ran.push(`${name} kept`),
    executePhase: async (phase) => {
      ran.push(`${name} ${phase}`);
      onRun?.();
    },
  };
}

test.serial(
  'merged plugins run in order on the owner event, and stop at the first exit',
  async (t) => {
    const ran: string[] = [];
    const ev = fakeEvent(['tenant-ratelimit', 7, 'tenant-cache', 8, 'token-meter', 9]);
    servedInstances(
      new Map([
        [7, instance('tenant-ratelimit', ran)],
        [8, instance('tenant-cache', ran, ev.exit)],
        [9, instance('token-meter', ran)],
      ]),
    );
    const merged = await mergeNext(ev.kong, 'tenant-auth', ['tenant-ratelimit', 'tenant-cache']);
    t.deepEqual(
      merged.map((m) => m.name),
      ['tenant-ratelimit', 'tenant-cache', 'token-meter'],
    );
    t.deepEqual(ev.calls, ['chain ["tenant-auth",["tenant-ratelimit","tenant-cache"],[]]']);
    await runMerged(ev.kong, merged);
    t.deepEqual(
      ran,
      [
        'tenant-ratelimit kept',
        'tenant-ratelimit access',
        'tenant-cache kept',
        'tenant-cache access',
      ],
      'token-meter not run after the cache answered (exited)',
    );
  },
);

test.serial(
  "each merged plugin's early work starts before the first merged access, on the same event",
  async (t) => {
    const ran: string[] = [];
    const seen: unknown[] = [];
    const withEarly = (name: string): ChainInstance => ({
      ...instance(name, ran),
      cls: {
        early(k: unknown) {
          ran.push(`${name} early`);
          seen.push(k);
        },
      },
    });
    const throwing: ChainInstance = {
      ...instance('token-meter', ran),
      cls: {
        early() {
          throw new Error('dropped: its access does the work');
        },
      },
    };
    const ev = fakeEvent(['tenant-ratelimit', 7, 'tenant-cache', 8, 'token-meter', 9]);
    servedInstances(
      new Map([
        [7, instance('tenant-ratelimit', ran)],
        [8, withEarly('tenant-cache')],
        [9, throwing],
      ]),
    );
    const merged = await mergeNext(ev.kong, 'tenant-auth', ['tenant-ratelimit', 'tenant-cache']);
    await runMerged(ev.kong, merged);
    t.deepEqual(ran, [
      'tenant-cache early',
      'tenant-ratelimit kept',
      'tenant-ratelimit access',
      'tenant-cache kept',
      'tenant-cache access',
      'token-meter kept',
      'token-meter access',
    ]);
    t.is(seen[0], ev.kong, "the owner's event: the access that follows finds it there");
  },
);

test.serial(
  'an instance this process does not have: the merge is undone, nothing runs',
  async (t) => {
    const ran: string[] = [];
    servedInstances(new Map([[7, instance('tenant-ratelimit', ran)]]));
    const ev = fakeEvent(['tenant-ratelimit', 7, 'tenant-cache', 8]);
    t.deepEqual(await mergeNext(ev.kong, 'tenant-auth', ['tenant-cache']), []);
    t.deepEqual(ev.calls.at(-1), 'unchain []');
    const wrongName = fakeEvent(['tenant-cache', 7]);
    t.deepEqual(await mergeNext(wrongName.kong, 'tenant-auth', ['tenant-cache']), []);
    t.deepEqual(wrongName.calls.at(-1), 'unchain []', 'an id that names another plugin');
    t.deepEqual(ran, []);
  },
);

test.serial('nothing merged: the snippet answered nil, or no event handle', async (t) => {
  servedInstances(new Map());
  const ev = fakeEvent(null);
  t.deepEqual(await mergeNext(ev.kong, 'tenant-auth', ['tenant-cache']), []);
  t.deepEqual(ev.calls.length, 1, 'no unchain for nothing');
  t.deepEqual(await mergeNext({}, 'tenant-auth', ['tenant-cache']), []);
});

test.serial(
  'a merge Kong could not run (the call failed): nothing merged, the phase goes on',
  async (t) => {
    servedInstances(new Map());
    const kong = attachEvent(
      {},
      {
        call: async () => {
          throw new Error('PDK method kong.ctx.shared.kta_pdk.chain failed');
        },
        exited: () => false,
      },
    );
    t.deepEqual(await mergeNext(kong, 'tenant-auth', ['tenant-cache']), []);
  },
);

test.serial(
  'the snippet says which merged logs Kong will not start: those run on the owner’s log event',
  async (t) => {
    const ran: string[] = [];
    servedInstances(
      new Map([
        [7, instance('tenant-cache', ran)],
        [9, instance('token-meter', ran)],
      ]),
    );
    const ev = fakeEvent(['tenant-cache', 7, false, 'token-meter', 9, true]);
    const merged = await mergeNext(
      ev.kong,
      'tenant-auth',
      ['tenant-cache', 'token-meter'],
      ['token-meter'],
    );
    t.deepEqual(ev.calls, ['chain ["tenant-auth",["tenant-cache","token-meter"],["token-meter"]]']);
    t.deepEqual(
      merged.map((m) => [m.name, m.logHere]),
      [
        ['tenant-cache', false],
        ['token-meter', true],
      ],
    );
    const meter = merged.find((m) => m.logHere);
    if (!meter) throw new Error('no log merged');
    await runMergedLog({}, meter);
    t.deepEqual(ran, ['token-meter kept', 'token-meter log']);
    // A snippet from before the hidden logs answers pairs: nothing is run here, Kong runs it.
    const old = fakeEvent(['tenant-cache', 7, 'token-meter', 9]);
    t.deepEqual(
      (await mergeNext(old.kong, 'tenant-auth', ['token-meter'], ['token-meter'])).map((m) => [
        m.name,
        m.logHere,
      ]),
      [
        ['tenant-cache', false],
        ['token-meter', false],
      ],
    );
  },
);
