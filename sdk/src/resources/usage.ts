import type { RequestOptions } from '../core/options.js';
import { getUsage } from '../gen/sdk.gen.js';
import type { GetUsageData, UsageReport } from '../gen/types.gen.js';
import { Resource } from './resource.js';

/** Requests and tokens used (`GET /api/v1/usage`): your own, or everyone's with `read_metrics`. */
export class UsageResource extends Resource {
  /**
   * Usage filtered by `user_id`, `key_id`, `model`, `since` and `until` (whole hours), grouped by
   * `group_by` (comma-separated `user`, `key`, `model`, `day`; none: one row of totals).
   */
  get(query?: GetUsageData['query'], options?: RequestOptions): Promise<UsageReport> {
    return this.transport.send('getUsage', (o) => getUsage(query ? { ...o, query } : o), options);
  }
}
