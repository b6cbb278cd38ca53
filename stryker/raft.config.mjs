import { mutationConfig } from './shared.mjs';

export default mutationConfig('raft', ['src/raft/core.ts']);
