/**
 * More than one upstream, and the process behind a listening port: what the circuit-breaker
 * tests need besides `startFrontDoor` (which starts one mock upstream, the service's).
 * Gateway-agnostic: nothing here asks the harness for anything.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { startMockUpstream, type MockKnobs, type MockUpstream } from '../../mock-upstream/index';
import type { OnClose } from './frontdoor';

/** Starts another mock upstream on 127.0.0.1 (an ephemeral port), stopped by `onClose`. */
export async function startExtraUpstream(
  onClose: OnClose,
  knobs: Partial<MockKnobs> = {},
): Promise<MockUpstream> {
  const upstream = await startMockUpstream(knobs);
  onClose(() => upstream.close());
  return upstream;
}

export async function freePort(): Promise<number> {
  // Outside the kernel's ephemeral range: a port found free here is bound later by someone
  // else (a plugin server's metrics endpoint, a gateway), and meanwhile every server started on
  // port 0 and every outgoing connection gets an ephemeral port, so none of them can take it
  // (a mock upstream once did, and a metrics test read the mock's 404).
  const low = ephemeralLow();
  for (let i = 0; i < 200; i++) {
    const port = 20000 + Math.floor(Math.random() * Math.max(1, low - 20000));
    if (await canListen(port)) return port;
  }
  throw new Error('no free port below the ephemeral range');
}

/** The first port the kernel hands out for port 0 and outgoing connections. */
function ephemeralLow(): number {
  try {
    const low = Number(
      readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0],
    );
    return Number.isInteger(low) && low > 21000 ? low : 32768;
  } catch {
    return 32768;
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** Socket inodes listening on `port` (IPv4 and IPv6), from /proc/net/tcp{,6}. */
function listeningInodes(port: number): Set<string> {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const out = new Set<string>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      // local_address is "ADDR:PORT"; state 0A is LISTEN; column 9 is the inode.
      if (cols[1]?.endsWith(`:${hex}`) && cols[3] === '0A' && cols[9]) out.add(cols[9]);
    }
  }
  return out;
}

/**
 * The pid of the process listening on a TCP port (Linux /proc), or null. Used to find the
 * plugin server behind a plugin's metrics port, whichever gateway started it.
 */
export function pidListeningOn(port: number): number | null {
  const inodes = listeningInodes(port);
  if (inodes.size === 0) return null;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${entry}/fd/${fd}`));
        if (m?.[1] && inodes.has(m[1])) return Number(entry);
      } catch {
        // the fd closed meanwhile
      }
    }
  }
  return null;
}
