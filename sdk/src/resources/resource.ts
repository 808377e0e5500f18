import type { RequestOptions } from '../core/options.js';
import { type CallMode, Page, type PageBody, PagePromise } from '../core/response.js';
import type { Operation, OperationResult, Transport } from '../core/transport.js';

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

  /**
   * A cursor-paginated list: the first page, each next one fetched with the previous page's
   * `next_cursor` and the same query and options.
   * @internal
   */
  protected paginate<T, Q extends { cursor?: string | undefined }>(
    operationId: string,
    operation: (query: Q) => Operation<OperationResult>,
    query: Q,
    options: RequestOptions | undefined,
  ): PagePromise<T> {
    const fetchPage = (pageQuery: Q): PagePromise<T> => {
      const mode: CallMode = { raw: false };
      const result = this.transport.request(operationId, operation(pageQuery), options, mode).then((response) => ({
        ...response,
        // With asResponse() the body is left unread: there is no page to build.
        data: mode.raw ? (undefined as never) : new Page<T>(response.data as PageBody<T>, (cursor) => fetchPage({ ...pageQuery, cursor })),
      }));
      return new PagePromise(result, mode);
    };
    return fetchPage(query);
  }
}
