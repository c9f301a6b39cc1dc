/**
 * More than one upstream, and the process behind a listening port: what the circuit-breaker
 * tests need besides `startFrontDoor` (which starts one mock upstream, the service's).
 * Gateway-agnostic: nothing here asks the harness for anything.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
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

/** A free port outside the ephemeral range (harness/free-port.ts says why). */
export { freePort } from '../../harness/free-port';

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
