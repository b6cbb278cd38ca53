import { mutationConfig } from './shared.mjs';

export default mutationConfig('common', ['src/common/crc32c.ts', 'src/common/murmur2.ts']);
