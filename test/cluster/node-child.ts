/**
 * One cluster node in its own process for the multi-process tests:
 *   node --import tsx test/cluster/node-child.ts '<NodeOptions as JSON>'
 * Prints `ready <port>` once the node serves. Stops on SIGTERM (a clean shutdown) and by itself
 * when its parent goes away (standard input closes), so no test leaves a node running.
 */
import { startNode } from '../../src/node/node.js';

const options = JSON.parse(process.argv[2]!);
const node = await startNode({ logLevel: 'warn', ...options });
process.stdout.write(`ready ${node.address.port}\n`);
const stop = () => void node.close().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
