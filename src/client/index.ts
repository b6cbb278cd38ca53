export { SluiceError } from '../common/errors.js';
export {
  decodeFetchResponse as parseFetchResponse,
  type FetchPage,
} from '../protocol/fetch-response.js';
export { Admin, type ClientOptions } from './admin.js';
export { type ConsumedRecord, PartitionConsumer, type PartitionConsumerOptions } from './consumer.js';
export { Producer, type ProducerOptions, type ProducerRecord, type RecordMetadata } from './producer.js';
