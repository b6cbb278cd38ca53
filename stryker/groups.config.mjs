import { mutationConfig } from './shared.mjs';

export default mutationConfig('groups', [
  'src/groups/assignors.ts',
  'src/groups/coordinator.ts',
  'src/groups/offsets-store.ts',
]);
