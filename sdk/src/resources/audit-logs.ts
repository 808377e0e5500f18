import type { RequestOptions } from '../core/options.js';
import { listAuditLogs } from '../gen/sdk.gen.js';
import type { AuditLogPage, ListAuditLogsData } from '../gen/types.gen.js';
import { Resource } from './resource.js';

/** The audit log (`GET /api/v1/audit-logs`, needs `view_audit_logs`). */
export class AuditLogsResource extends Resource {
  /**
   * One page of audit events, newest first, filtered by `actor`, `action`, `since` and `until`.
   * For the next (older) page pass the page's `next_cursor` as `cursor`.
   */
  list(query?: ListAuditLogsData['query'], options?: RequestOptions): Promise<AuditLogPage> {
    return this.transport.send('listAuditLogs', (o) => listAuditLogs(query ? { ...o, query } : o), options);
  }
}
