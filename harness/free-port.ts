/**
 * A TCP port that is free now and that nobody else is handed meanwhile, for a server a
 * test starts later (Kong's proxy_listen, a plugin server's metrics port, a private Redis).
 *
 * A port found with `listen(0)` is in the kernel's ephemeral range: between the check and the
 * later bind, every server started on port 0 and every outgoing connection may be given the
 * same port. A CI run lost a Kong start that way (`bind() to 127.0.0.1:45721 failed (98:
 * Address already in use)`), and a mock upstream once took a plugin server's metrics port.
 * Ports below that range are handed out only by a caller that names them: this function.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { threadId } from 'node:worker_threads';

const LOWEST = 20000;

/**
 * Ports this process has handed out. A port is checked free and handed over, but the caller
 * binds it later (often much later: a whole cluster's ports are chosen before its first node
 * starts), so a second call meanwhile would find it free again. A CI run lost a soak that way:
 * two of its eighteen metrics ports came out equal, one plugin server could not listen, and
 * its gauge was read from the other's port.
 */
const handedOut = new Set<number>();

/**
 * Where this process starts looking: its own stretch of the range, by pid and worker thread,
 * so that test files running side by side (ava's workers) walk different stretches and rarely
 * meet on a port one of them has chosen and not yet bound. Every stretch wraps into the rest.
 */
const SLICES = 16;
const slice = (process.pid * 7 + threadId) % SLICES;

/** A free port between 20000 and the kernel's ephemeral range, checked by listening on it. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const low = ephemeralLow();
  const span = Math.max(1, low - LOWEST);
  const width = Math.max(1, Math.floor(span / SLICES));
  const start = slice * width + Math.floor(Math.random() * width);
  for (let i = 0; i < span; i++) {
    const port = LOWEST + ((start + i) % span);
    if (handedOut.has(port)) continue;
    if (!(await canListen(port, host))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port between ${LOWEST} and the ephemeral range (${low})`);
}

/** `n` distinct free ports. */
export async function freePorts(n: number, host = '127.0.0.1'): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await freePort(host));
  return out;
}

/** The first port the kernel hands out for port 0 and outgoing connections. */
function ephemeralLow(): number {
  try {
    const low = Number(
      readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0],
    );
    return Number.isInteger(low) && low > LOWEST + 1000 ? low : 32768;
  } catch {
    return 32768;
  }
}

export function canListen(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}
