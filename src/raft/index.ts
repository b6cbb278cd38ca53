export { RaftCore, type RaftCoreOptions, type RaftInitialState } from './core.js';
export {
  isReplication,
  RaftDriver,
  type RaftDriverDeps,
  type RaftDriverOptions,
  type RaftStatus,
  type RaftTransport,
  type SnapshotHooks,
  type StateMachine,
} from './driver.js';
export {
  applyUpdate,
  LevelRaftStorage,
  MemoryRaftStorage,
  type RaftPersistentState,
  type RaftStorage,
  type RaftUpdate,
} from './storage.js';
export * from './types.js';
