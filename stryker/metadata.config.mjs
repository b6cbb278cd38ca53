import { mutationConfig } from './shared.mjs';

// The controller and the record codec. The image, placement and reassignment are the
// `metadata-image` config: same tests, separate report, so that one can be rerun without the other.
export default mutationConfig('metadata', ['src/metadata/controller.ts', 'src/metadata/records.ts']);
