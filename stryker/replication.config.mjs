import { mutationConfig } from './shared.mjs';

export default mutationConfig('replication', [
  'src/replication/replica.ts',
  'src/replication/isr.ts',
  'src/replication/divergence.ts',
  'src/replication/replica-manager.ts',
]);
