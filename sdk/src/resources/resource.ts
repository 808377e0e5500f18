import type { Transport } from '../core/transport.js';

/** Base of the API areas: each maps its methods' arguments onto generated operations, nothing more. */
export abstract class Resource {
  /**
   * Sends the operations; shared by all resources of one client.
   * @internal
   */
  protected readonly transport: Transport;

  /**
   * Resources are created by {@link InfernoClient}.
   * @internal
   */
  constructor(transport: Transport) {
    this.transport = transport;
  }
}
