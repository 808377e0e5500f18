import { redactText } from '../logging/redact.js';
import type { AuditEvent, AuditStore } from '../store/types.js';
import type { AppContext } from './context.js';

/** The request as an audit target: method and path, redacted and cut short (paths are client input). */
export function requestTarget(ctx: AppContext): string {
  return `${ctx.method} ${redactText(ctx.path).slice(0, 200)}`;
}

/** Records an audit event with the request's actor, IP and id filled in. */
export async function audit(
  store: AuditStore,
  ctx: AppContext,
  event: Pick<AuditEvent, 'action' | 'outcome' | 'target' | 'details'> & Partial<AuditEvent>,
): Promise<void> {
  const principal = ctx.state.principal;
  await store.recordAudit({
    actorUserId: principal?.user.id ?? null,
    actorKeyId: principal?.apiKey?.id ?? null,
    // An address is at most 45 characters; behind a proxy that misbehaves it is whatever the header said.
    ip: ctx.ip.slice(0, 64),
    requestId: ctx.state.requestId,
    ...event,
  });
}
