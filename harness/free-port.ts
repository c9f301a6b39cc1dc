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

const LOWEST = 20000;

/** A free port between 20000 and the kernel's ephemeral range, checked by listening on it. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const low = ephemeralLow();
  for (let i = 0; i < 200; i++) {
    const port = LOWEST + Math.floor(Math.random() * Math.max(1, low - LOWEST));
    if (await canListen(port, host)) return port;
  }
  throw new Error(`no free port between ${LOWEST} and the ephemeral range (${low})`);
}

/** `n` distinct free ports. */
export async function freePorts(n: number, host = '127.0.0.1'): Promise<number[]> {
  const out: number[] = [];
  while (out.length < n) {
    const port = await freePort(host);
    if (!out.includes(port)) out.push(port);
  }
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
