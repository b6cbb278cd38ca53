import { mutationConfig } from './shared.mjs';

export default mutationConfig('storage', [
  'src/storage/partition-log.ts',
  'src/storage/segment.ts',
  'src/storage/file-cache.ts',
]);
