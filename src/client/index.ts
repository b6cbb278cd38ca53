export { type ErrorCode, isSluiceError, SluiceError } from '../common/errors.js';
export type {
  ClusterResponse,
  FetchedRecord,
  MetadataResponse,
  OffsetsResponse,
  PartitionInfo,
  ProduceRecord,
  ProduceResponse,
  TopicCreateRequest,
  TopicDescription,
} from '../protocol/api.js';
export type { BatchRecord, Header } from '../protocol/batch.js';
export {
  decodeFetchResponse as parseFetchResponse,
  type FetchPage,
} from '../protocol/fetch-response.js';
export { Admin, type ClientOptions } from './admin.js';
export { type CodecName, type CodecStatus, loadCodecs } from './codecs.js';
export type { TransportOptions } from './connection.js';
export {
  type ConsumedRecord,
  Consumer,
  type ConsumerOptions,
  PartitionConsumer,
  type PartitionConsumerOptions,
  type RebalanceEvent,
  type TopicPartition,
} from './consumer.js';
export {
  Producer,
  type ProducerOptions,
  type ProducerRecord,
  type RecordBytes,
  type RecordMetadata,
} from './producer.js';
