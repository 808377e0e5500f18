import type { Config } from '../config.js';
import type { Logger } from '../logging/logger.js';
import { NO_TRACING, type Tracing } from './tracing.js';

/**
 * The tracing of `[tracing]`: `NO_TRACING` unless `otlp_endpoint` is set, in which case the
 * OpenTelemetry SDK is loaded (only then: a dynamic import) and spans are exported over OTLP/HTTP.
 */
export async function startTracing(settings: Config['tracing'], version: string, logger: Logger): Promise<Tracing> {
  if (!settings.otlp_endpoint) return NO_TRACING;
  const { OtelTracing } = await import('./otel-tracing.js');
  const tracing = new OtelTracing({ endpoint: settings.otlp_endpoint, serviceName: settings.service_name, version });
  logger.info({ otlp_endpoint: settings.otlp_endpoint }, 'tracing: exporting spans over OTLP/HTTP');
  return tracing;
}
