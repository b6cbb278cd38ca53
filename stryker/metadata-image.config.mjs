import { mutationConfig } from './shared.mjs';

// The metadata image and what the controller derives from it: replica placement and the
// reassignment plans. Runs test/metadata (stryker/vitest.metadata.config.ts), like `metadata`.
export default mutationConfig(
  'metadata-image',
  ['src/metadata/image.ts', 'src/metadata/placement.ts', 'src/metadata/reassignment.ts'],
  { tests: 'metadata' },
);
