import { mutationConfig } from './shared.mjs';

export default mutationConfig('protocol', ['src/protocol/batch.ts']);
