import type {
  ClusterResponse,
  DecommissionResponse,
  GroupDescriptionResponse,
  MetadataResponse,
  OffsetsResponse,
  ReassignmentsResponse,
  ReassignRequest,
  TopicCreateRequest,
  TopicDescription,
} from '../protocol/api.js';
import { ENDPOINTS, endpointUrl } from '../protocol/api.js';
import { Connection, type TransportOptions, transportOf } from './connection.js';

export interface ClientOptions extends TransportOptions {
  /** The node to talk to, e.g. `http://127.0.0.1:8092` (or `https://` behind a TLS proxy). */
  bootstrap: string;
  requestTimeoutMs?: number;
}

/** Topics, configs, offsets and cluster information. Each method is one endpoint of ENDPOINTS. */
export class Admin {
  readonly #connection: Connection;
  readonly #timeoutMs: number;

  constructor(options: ClientOptions) {
    this.#connection = new Connection(options.bootstrap, transportOf(options));
    this.#timeoutMs = options.requestTimeoutMs ?? 30_000;
  }

  #call<T>(
    endpoint: (typeof ENDPOINTS)[keyof typeof ENDPOINTS],
    params: Record<string, string | number> = {},
    body?: unknown,
    query: Record<string, string | number | undefined> = {},
  ): Promise<T> {
    return this.#connection.call<T>(endpoint.method, endpointUrl(endpoint, params, query), body, {
      timeoutMs: this.#timeoutMs,
    });
  }

  cluster(): Promise<ClusterResponse> {
    return this.#call(ENDPOINTS.cluster);
  }

  /** Makes a broker-only node (a learner of the metadata log) a voter of the metadata quorum. */
  addVoter(nodeId: number): Promise<{ voters: number[]; learners: number[] }> {
    return this.#call(ENDPOINTS.addVoter, {}, { nodeId });
  }

  /** Takes a voter out of the metadata quorum; it follows the log as a learner. */
  removeVoter(nodeId: number): Promise<{ voters: number[]; learners: number[] }> {
    return this.#call(ENDPOINTS.removeVoter, { nodeId });
  }

  /** Each partition's leader and every node's endpoint, of the topics named (all when absent). */
  metadata(topics?: readonly string[]): Promise<MetadataResponse> {
    return this.#call(ENDPOINTS.metadata, {}, undefined, { topics: topics?.join(',') });
  }

  createTopic(request: TopicCreateRequest): Promise<TopicDescription> {
    return this.#call(ENDPOINTS.createTopic, {}, request);
  }

  async listTopics(): Promise<{ name: string; partitions: number; replicationFactor: number }[]> {
    return (
      await this.#call<{ topics: { name: string; partitions: number; replicationFactor: number }[] }>(
        ENDPOINTS.listTopics,
      )
    ).topics;
  }

  describeTopic(topic: string): Promise<TopicDescription> {
    return this.#call(ENDPOINTS.describeTopic, { topic });
  }

  deleteTopic(topic: string): Promise<{ name: string; deleted: true }> {
    return this.#call(ENDPOINTS.deleteTopic, { topic });
  }

  /** Sets configs; `null` resets one to its default. */
  alterConfigs(
    topic: string,
    configs: Record<string, string | number | boolean | null>,
  ): Promise<TopicDescription> {
    return this.#call(ENDPOINTS.alterTopicConfigs, { topic }, configs);
  }

  addPartitions(topic: string, partitions: number): Promise<TopicDescription> {
    return this.#call(ENDPOINTS.addPartitions, { topic }, { partitions });
  }

  /** Partition reassignments in progress, with each adding replica's lag. */
  listReassignments(): Promise<ReassignmentsResponse> {
    return this.#call(ENDPOINTS.listReassignments);
  }

  /** Starts (target replicas) or cancels (null) reassignments, all or none. */
  reassignPartitions(partitions: ReassignRequest['partitions']): Promise<ReassignmentsResponse> {
    return this.#call(ENDPOINTS.reassignPartitions, {}, { partitions });
  }

  /** Moves every replica off the broker. */
  decommissionBroker(brokerId: number): Promise<DecommissionResponse> {
    return this.#call(ENDPOINTS.decommissionBroker, { brokerId });
  }

  /** Earliest and latest offsets; with a timestamp, also the first offset at or after it. */
  offsets(topic: string, partition: number, timestampMs?: number): Promise<OffsetsResponse> {
    return this.#call(ENDPOINTS.offsets, { topic, partition }, undefined, { timestamp: timestampMs });
  }

  /** Every consumer group of the cluster, with its state, member count and coordinator. */
  async listGroups(): Promise<{ group: string; state: string; members: number; coordinator: number }[]> {
    return (
      await this.#call<{ groups: { group: string; state: string; members: number; coordinator: number }[] }>(
        ENDPOINTS.listGroups,
      )
    ).groups;
  }

  /** A group's members and assignment, and per partition its committed offset, log end and lag. */
  describeGroup(group: string): Promise<GroupDescriptionResponse> {
    return this.#call(ENDPOINTS.describeGroup, { group });
  }

  /** Sets the committed offsets of an empty group's partitions of one topic. */
  async resetGroupOffsets(
    group: string,
    request: {
      topic: string;
      partitions?: number[];
      to: 'earliest' | 'latest' | 'timestamp' | 'shift' | 'offset';
      timestamp?: number;
      shift?: number;
      offset?: number;
    },
  ): Promise<{ topic: string; partition: number; offset: number }[]> {
    return (
      await this.#call<{ offsets: { topic: string; partition: number; offset: number }[] }>(
        ENDPOINTS.resetGroupOffsets,
        { group },
        request,
      )
    ).offsets;
  }

  /** Deletes an empty group and its committed offsets. */
  deleteGroup(group: string): Promise<{ group: string; deleted: true }> {
    return this.#call(ENDPOINTS.deleteGroup, { group });
  }

  /** Closes the connection; requests still in flight are answered first. */
  async close(): Promise<void> {
    this.#connection.close();
  }

  /** `await using admin = new Admin(...)` closes it at the end of the block. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
