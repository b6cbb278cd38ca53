export { SluiceError } from '../common/errors.js';
export { Admin, type ClientOptions } from './admin.js';
export {
  type ConsumedRecord,
  type FetchPage,
  PartitionConsumer,
  type PartitionConsumerOptions,
  parseFetchResponse,
} from './consumer.js';
export { Producer, type ProducerOptions, type ProducerRecord, type RecordMetadata } from './producer.js';
