/**
 * A broker in its own process for the durability and transport tests:
 *   node --import tsx test/durability/broker-child.ts <dataDir> <port> [configs as JSON]
 * Prints `listening <port>` when ready.
 */
import { startNode } from '../../src/node/node.js';

const [dataDir, port, configs] = process.argv.slice(2);
const node = await startNode({
  dataDir: dataDir!,
  port: Number(port ?? 0),
  configs: configs ? JSON.parse(configs) : {},
});
process.stdout.write(`listening ${node.address.port}\n`);
const stop = () => void node.close().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
