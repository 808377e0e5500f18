import { createRequire } from 'node:module';
import { expect } from 'vitest';
import { call } from './server.js';

// A real parser of the Prometheus text format (prom2json's output shape); it ships no types.
const parsePrometheusTextFormat = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => ParsedFamily[];

interface ParsedFamily {
  name: string;
  help: string;
  type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED';
  metrics: { labels?: Record<string, string>; value?: string; buckets?: Record<string, string>; count?: string; sum?: string }[];
}

type Labels = Record<string, string>;
const matches = (labels: Labels | undefined, wanted: Labels) => Object.entries(wanted).every(([k, v]) => labels?.[k] === v);

/**
 * The parser keeps only one series of a histogram with labels (it merges their buckets and drops
 * their `_sum` and `_count`). The text format defines a histogram as its `_bucket`, `_sum` and
 * `_count` series, so for the values each histogram is also parsed as those three families.
 */
function splitHistograms(text: string, histograms: ReadonlySet<string>): string {
  const out: string[] = [];
  let current: { name: string; parts: Record<'bucket' | 'sum' | 'count', string[]> } | undefined;
  const flush = () => {
    if (!current) return;
    for (const [suffix, lines] of Object.entries(current.parts)) out.push(`# TYPE ${current.name}_${suffix} gauge`, ...lines);
    current = undefined;
  };
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) /.exec(line);
    if (type) {
      flush();
      if (histograms.has(type[1]!)) current = { name: type[1]!, parts: { bucket: [], sum: [], count: [] } };
      else out.push(line);
      continue;
    }
    if (current && !line.startsWith('#') && line.trim() !== '') {
      const suffix = /^[a-zA-Z_:][a-zA-Z0-9_:]*_(bucket|sum|count)[{ ]/.exec(line)?.[1] as 'bucket' | 'sum' | 'count' | undefined;
      expect(suffix, line).toBeDefined();
      current.parts[suffix!].push(line);
    } else if (!current) out.push(line);
  }
  flush();
  return out.join('\n');
}

/** One scrape of `/metrics`, parsed. */
export class Scrape {
  /** Every family as exposed (histograms with their types, but see `splitHistograms`). */
  readonly families: Map<string, ParsedFamily>;
  /** The same, histograms as their `_bucket`, `_sum` and `_count` series. */
  readonly #series: Map<string, ParsedFamily>;

  constructor(readonly text: string) {
    this.families = new Map(parsePrometheusTextFormat(text).map((f) => [f.name, f]));
    const histograms = new Set([...this.families.values()].filter((f) => f.type === 'HISTOGRAM').map((f) => f.name));
    this.#series = new Map(parsePrometheusTextFormat(splitHistograms(text, histograms)).map((f) => [f.name, f]));
  }

  #seriesOf(name: string, suffix: string, labels: Labels) {
    expect(this.families.get(name)?.type, `${name} is a histogram`).toBe('HISTOGRAM');
    return this.#series.get(`${name}_${suffix}`)!.metrics.filter((m) => matches(m.labels, labels));
  }

  family(name: string): ParsedFamily {
    const family = this.families.get(name);
    expect(family, `metric ${name} in the scrape`).toBeDefined();
    return family!;
  }

  /** The sum of a counter's or gauge's series whose labels include `labels` (0 when none). */
  value(name: string, labels: Labels = {}): number {
    return this.family(name).metrics.filter((m) => matches(m.labels, labels)).reduce((n, m) => n + Number(m.value), 0);
  }

  /** The summed `_count` of a histogram's series whose labels include `labels`. */
  count(name: string, labels: Labels = {}): number {
    return this.#seriesOf(name, 'count', labels).reduce((n, m) => n + Number(m.value), 0);
  }

  /** The summed `_sum` of a histogram's matching series. */
  sum(name: string, labels: Labels = {}): number {
    return this.#seriesOf(name, 'sum', labels).reduce((n, m) => n + Number(m.value), 0);
  }

  /** How many series (label sets) a family has; for a histogram, how many label sets it has. */
  series(name: string): number {
    return this.family(name).type === 'HISTOGRAM' ? this.#seriesOf(name, 'count', {}).length : this.family(name).metrics.length;
  }

  /** Every value one label takes in a family. */
  labelValues(name: string, label: string): Set<string> {
    return new Set(this.family(name).metrics.map((m) => m.labels?.[label]).filter((v): v is string => v !== undefined));
  }
}

/** Scrapes `GET /metrics` (with a key that has `read_metrics`, unless it is public). */
export async function scrape(baseUrl: string, apiKey?: string): Promise<Scrape> {
  const res = await call(baseUrl, 'GET', '/metrics', apiKey ? { apiKey } : {});
  expect(res.status, String(res.body).slice(0, 200)).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; ?version=0\.0\.4/);
  return new Scrape(res.body as string);
}
