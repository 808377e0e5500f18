/**
 * Bounded label values. Every label of every metric takes its values from a small, known set, so
 * that no client (a path, a key, a model name) can grow the number of series without limit.
 */

/** A label's value for anything outside the known set. */
export const OTHER = 'other';
/** The `route` of a request no route matched (unknown paths are never labels). */
export const UNMATCHED_ROUTE = 'unmatched';

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** An HTTP method as a label: the standard ones, the rest folded into `other`. */
export const methodLabel = (method: string): string => (METHODS.has(method) ? method : OTHER);

/** A status as a label: always a three-digit code. */
export const statusLabel = (status: number): string => (Number.isInteger(status) && status >= 100 && status <= 599 ? String(status) : OTHER);

/**
 * The first `max` distinct values keep their own label; later ones fold into `other`. Model ids
 * are files in the models dir (admins add them), so the set is small in practice; the cap holds
 * even if an uploader creates thousands.
 */
export class LabelBudget {
  readonly #known = new Set<string>();

  constructor(private readonly max: number) {}

  label(value: string): string {
    if (this.#known.has(value)) return value;
    if (this.#known.size >= this.max) return OTHER;
    this.#known.add(value);
    return value;
  }
}
