import type { RequestOptions } from '../core/options.js';
import type { PagePromise } from '../core/response.js';
import { listAuditLogs } from '../gen/sdk.gen.js';
import type { AuditEntry, ListAuditLogsData } from '../gen/types.gen.js';
import { Resource } from './resource.js';

/** The audit log (`GET /api/v1/audit-logs`, needs `view_audit_logs`). */
export class AuditLogsResource extends Resource {
  /**
   * Audit events, newest first, filtered by `actor`, `action`, `since` and `until`. Await it for
   * the first page (`hasNextPage()`, `getNextPage()`), or iterate it for every event of every page.
   */
  list(query?: ListAuditLogsData['query'], options?: RequestOptions): PagePromise<AuditEntry> {
    return this.paginate<AuditEntry, NonNullable<ListAuditLogsData['query']>>(
      'listAuditLogs',
      (q) => (o) => listAuditLogs({ ...o, query: q }),
      { ...query },
      options,
    );
  }
}
