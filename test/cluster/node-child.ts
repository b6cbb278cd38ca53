/**
 * One cluster node in its own process for the multi-process tests:
 *   node --import tsx test/cluster/node-child.ts '<NodeOptions as JSON>'
 * Prints `ready <port>` once the node serves. Stops on SIGTERM (a clean shutdown: exit code 0, or
 * 70 when the close failed) and by itself when its parent goes away (standard input closes), so no
 * test leaves a node running.
 */
import { startNode } from '../../src/node/node.js';

const options = JSON.parse(process.argv[2]!);
const node = await startNode({ logLevel: 'warn', ...options });
process.stdout.write(`ready ${node.address.port}\n`);
// A close that fails exits 70, having said why: a test that stops nodes cleanly checks for 0.
const stop = () =>
  void node.close().then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`the node's close failed: ${(error as Error)?.stack ?? String(error)}\n`);
      process.exit(70);
    },
  );
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
