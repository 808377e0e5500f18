// Patterns of secrets that could reach a log line through a path, an error message or a header:
// API keys, JWTs, bearer credentials and email addresses. Passwords have no pattern (but in connection URLs): they are kept
// out of logs by never logging bodies or headers.
// Each pattern may only start where its token starts (the lookbehinds), so a hostile input such as
// a 16 kB path of `eyJeyJ...` or `aaaa...` costs linear time, not quadratic.
const SECRET_PATTERNS: readonly [RegExp, string][] = [
  // A password inside a connection URL (postgres://user:password@host, redis://:password@host).
  // Bounded lengths keep the work linear; first, before the email pattern sees `password@host.tld`.
  [/\b([a-z][a-z0-9+.-]{0,19}:\/\/[^\s:@/]{0,128}):[^\s@/]{1,256}@/gi, '$1:***@'],
  [/inf_[0-9A-Za-z]{4,}/g, 'inf_[REDACTED]'],
  [/(?<![\w-])eyJ[\w-]*\.[\w-]*\.[\w-]*/g, '[REDACTED_JWT]'],
  [/\b(Bearer|Basic)\s+[^\s"',;]+/gi, '$1 [REDACTED]'],
  // `@` also percent-encoded, as it arrives in a request path.
  // Lengths bounded as in RFC 5321 (64 before the @, 253 after), which also bounds the work.
  [/(?<![^\s@"'<>(),;:/])[^\s@"'<>(),;:/]{1,64}?(?:@|%40)[^\s@"'<>(),;:/]{1,253}\.[A-Za-z]{2,}/gi, '[REDACTED_EMAIL]'],
];

/** Longer strings are cut before they reach a log line: no log line needs a 1 MB path. */
const MAX_LOGGED_CHARS = 4096;

/**
 * Every pattern above needs one of these to match: a string without any is returned as it is, at
 * the cost of one scan (most of what a log line carries: ids, addresses, methods, plain paths).
 */
const MIGHT_HOLD_A_SECRET = /inf_|eyJ|bearer|basic|@|%40/i;

export function redactText(text: string): string {
  if (text.length <= MAX_LOGGED_CHARS && !MIGHT_HOLD_A_SECRET.test(text)) return text;
  let out = text.length > MAX_LOGGED_CHARS ? `${text.slice(0, MAX_LOGGED_CHARS)}…[truncated]` : text;
  for (const [pattern, replacement] of SECRET_PATTERNS) out = out.replace(pattern, replacement);
  return out;
}

/**
 * Fields censored outright, whatever they hold, at the top of a record and one level down
 * (`password`, `user.password`): secrets without a pattern, and containers of them.
 */
export const SECRET_FIELDS: ReadonlySet<string> = new Set(['password', 'token', 'key', 'authorization', 'headers', 'jwt_secret', 'admin_password']);
export const CENSOR = '[REDACTED]';

/**
 * Redacts a log record in one walk: the secret fields censored (top level and one down), every
 * string passed through the patterns (objects and arrays walked, depth-limited).
 */
export function redactValue(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redactText(value);
  // Errors keep their class for pino's `err` serializer, which redacts message and stack itself.
  if (value instanceof Error) return value;
  if (depth > 6 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const key in value) {
    if (!Object.hasOwn(value, key)) continue;
    const v = (value as Record<string, unknown>)[key];
    out[key] = depth <= 1 && SECRET_FIELDS.has(key) && v !== undefined ? CENSOR : redactValue(v, depth + 1);
  }
  return out;
}
