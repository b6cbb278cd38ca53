import { mutationConfig } from './shared.mjs';

export default mutationConfig('metadata', [
  'src/metadata/controller.ts',
  'src/metadata/image.ts',
  'src/metadata/records.ts',
  'src/metadata/placement.ts',
  'src/metadata/reassignment.ts',
]);
