/**
 * freePort hands a port over to be bound later; until then nothing else in this process may be
 * handed the same one. A CI soak lost a node's metrics port that way: two of the eighteen ports
 * it chose before starting its nodes came out equal.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { canListen, freePort, freePorts } from '../../harness/free-port';

const ephemeralLow = Number(
  readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0],
);

test('ports chosen and not yet bound are never handed out twice', async (t) => {
  const ports: number[] = [];
  for (let i = 0; i < 300; i++) ports.push(await freePort());
  t.is(new Set(ports).size, ports.length);
  for (const p of ports) t.true(p >= 20000 && p < ephemeralLow, `${p} below the ephemeral range`);
});

test('freePorts gives n distinct ports', async (t) => {
  const ports = await freePorts(40);
  t.is(ports.length, 40);
  t.is(new Set(ports).size, 40);
});

test('a port someone holds is not handed out', async (t) => {
  const held = await freePort();
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(held, '127.0.0.1', () => r()));
  try {
    t.false(await canListen(held));
    for (let i = 0; i < 100; i++) t.not(await freePort(), held);
  } finally {
    await new Promise((r) => srv.close(r));
  }
});
