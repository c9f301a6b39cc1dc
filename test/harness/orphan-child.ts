// Child process for kong-parity.test.ts: starts a gateway, prints the plugin-server pids, then
// ends WITHOUT gateway.close() — by process.exit() or by an uncaught exception (argv[2]).
import { join } from 'node:path';
import { startGateway } from '../../harness/index';

const ORDER_DIR = join(__dirname, '..', 'fixtures', 'pluginservers', 'harness-order');
const EDGE_DIR = join(__dirname, '..', 'fixtures', 'pluginservers', 'harness-edge');

async function main(): Promise<void> {
  const gw = await startGateway({
    pluginServers: { 'harness-order': ORDER_DIR, 'harness-edge': EDGE_DIR },
    config: { _format_version: '3.0' },
  });
  const pids = ['harness-order', 'harness-edge'].map((n) => gw.pluginServerInfo(n).pid);
  process.stdout.write(`${JSON.stringify(pids)}\n`, () => {
    if (process.argv[2] === 'throw') throw new Error('orphan-child: uncaught on purpose');
    process.exit(0);
  });
}

void main();
