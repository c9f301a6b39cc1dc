/**
 * A port chosen for Kong's proxy that someone else binds first (a CI run lost a Kong start to
 * `bind() to 127.0.0.1:45721 failed (98: Address already in use)`): kong-runner chooses again.
 * Real Kong 3.9.3; fails, does not skip, without one.
 */
import test from 'ava';
import net from 'node:net';
import { freePort } from '../../harness/free-port';
import {
  KongStartError,
  locateKong,
  startKong,
  startKongOnAFreePort,
} from '../../kong-runner/index';

const config = { _format_version: '3.0', services: [] };

async function occupied(): Promise<{ port: number; close(): Promise<void> }> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const { port } = srv.address() as net.AddressInfo;
  return { port, close: () => new Promise((r) => srv.close(() => r())) };
}

test.before(() => {
  if (!locateKong()) throw new Error('no Kong 3.9: `scripts/services/kong.sh install`');
});

test.serial(
  'a named port already bound: Kong refuses with the message the retry looks for',
  async (t) => {
    const taken = await occupied();
    t.teardown(() => taken.close());
    const e = await t.throwsAsync(startKong({ config, pluginServers: {}, port: taken.port }));
    t.true(e instanceof KongStartError);
    t.true(e!.message.includes(`:${taken.port} failed (98:`), e!.message.slice(0, 400));
  },
);

test.serial(
  'a chosen port taken before Kong binds it: another is chosen and Kong starts',
  async (t) => {
    const taken = await occupied();
    t.teardown(() => taken.close());
    const offered: number[] = [];
    const said: string[] = [];
    const gw = await startKongOnAFreePort(
      { config, pluginServers: {}, logger: (m) => said.push(m) },
      async (host) => {
        const port = offered.length === 0 ? taken.port : await freePort(host);
        offered.push(port);
        return port;
      },
    );
    t.teardown(() => gw.close());
    t.is(offered.length, 2);
    t.is(gw.port, offered[1] as number);
    t.true(gw.port !== taken.port);
    t.true(said.some((m) => m.includes(`port ${taken.port} was taken`)));
    const res = await fetch(`${gw.url}/nothing-here`);
    t.is(res.status, 404);
  },
);
