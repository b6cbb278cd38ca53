/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4), for the tests: it
 * throws on anything a Prometheus server would refuse or that breaks the conventions Sluice keeps,
 * rather than skipping it.
 *
 * - `# HELP name text` and `# TYPE name type` come once per family, before its samples.
 * - A sample is `name{label="value",...} value`; names and label names are valid identifiers, label
 *   values escape only `\\`, `\"` and `\n`; a series appears once.
 * - A counter's family name ends in `_total`; a histogram's samples are `_bucket` (with `le`,
 *   cumulative, ending at `+Inf`), `_sum` and `_count`, and the `+Inf` bucket equals the count.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export function parsePrometheusText(text: string): Map<string, MetricFamily> {
  if (!text.endsWith('\n')) throw new Error('the exposition does not end with a newline');
  const families = new Map<string, MetricFamily>();
  const seenSeries = new Set<string>();
  let current: MetricFamily | undefined;
  const lines = text.split('\n').slice(0, -1);
  lines.forEach((line, index) => {
    const where = `line ${index + 1}: ${line}`;
    if (line === '') return;
    if (line.startsWith('# HELP ')) {
      const [name, ...help] = line.slice(7).split(' ');
      if (!NAME.test(name!)) throw new Error(`${where}: bad metric name`);
      if (families.has(name!)) throw new Error(`${where}: a second HELP for ${name}`);
      current = { name: name!, type: '', help: help.join(' '), samples: [] };
      families.set(name!, current);
      return;
    }
    if (line.startsWith('# TYPE ')) {
      const [name, type, ...rest] = line.slice(7).split(' ');
      if (rest.length > 0 || !TYPES.has(type!)) throw new Error(`${where}: bad TYPE line`);
      if (!current || current.name !== name || current.type !== '')
        throw new Error(`${where}: TYPE is not right after its HELP`);
      current.type = type!;
      return;
    }
    if (line.startsWith('#')) throw new Error(`${where}: an unknown comment`);
    const sample = parseSample(line, where);
    if (!current || current.type === '') throw new Error(`${where}: a sample before its TYPE`);
    if (!belongsTo(sample.name, current)) throw new Error(`${where}: not a sample of ${current.name}`);
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (seenSeries.has(key)) throw new Error(`${where}: a series given twice`);
    seenSeries.add(key);
    current.samples.push(sample);
  });
  for (const family of families.values()) checkFamily(family);
  return families;
}

function belongsTo(sampleName: string, family: MetricFamily): boolean {
  if (family.type !== 'histogram') return sampleName === family.name;
  return ['_bucket', '_sum', '_count'].some((suffix) => sampleName === `${family.name}${suffix}`);
}

function parseSample(line: string, where: string): Sample {
  const open = line.indexOf('{');
  const space = line.lastIndexOf(' ');
  if (space < 0) throw new Error(`${where}: no value`);
  const name = open >= 0 && open < space ? line.slice(0, open) : line.slice(0, space);
  if (!NAME.test(name)) throw new Error(`${where}: bad sample name`);
  const labels: Record<string, string> = {};
  if (open >= 0 && open < space) {
    let i = open + 1;
    while (line[i] !== '}') {
      const eq = line.indexOf('=', i);
      const labelName = line.slice(i, eq);
      if (!LABEL_NAME.test(labelName)) throw new Error(`${where}: bad label name ${labelName}`);
      if (line[eq + 1] !== '"') throw new Error(`${where}: a label value is not quoted`);
      let value = '';
      let j = eq + 2;
      for (; line[j] !== '"'; j++) {
        if (j >= line.length) throw new Error(`${where}: an unterminated label value`);
        if (line[j] === '\\') {
          const next = line[++j];
          if (next === 'n') value += '\n';
          else if (next === '\\' || next === '"') value += next;
          else throw new Error(`${where}: a bad escape in a label value`);
        } else value += line[j];
      }
      if (labelName in labels) throw new Error(`${where}: label ${labelName} given twice`);
      labels[labelName] = value;
      i = j + 1;
      if (line[i] === ',') i++;
      else if (line[i] !== '}') throw new Error(`${where}: labels not separated by commas`);
    }
    if (i + 1 !== space) throw new Error(`${where}: junk after the labels`);
  }
  const text = line.slice(space + 1);
  const value =
    text === '+Inf' ? Infinity : text === '-Inf' ? -Infinity : text === 'NaN' ? NaN : Number(text);
  if (text === '' || (Number.isNaN(value) && text !== 'NaN')) throw new Error(`${where}: bad value ${text}`);
  return { name, labels, value };
}

function checkFamily(family: MetricFamily): void {
  if (family.type === 'counter') {
    if (!family.name.endsWith('_total')) throw new Error(`counter ${family.name} does not end in _total`);
    for (const s of family.samples)
      if (!(s.value >= 0)) throw new Error(`counter ${family.name} has a negative value`);
  }
  if (family.type !== 'histogram') return;
  const series = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const s of family.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    let entry = series.get(key);
    if (!entry) series.set(key, (entry = { buckets: [] }));
    if (s.name.endsWith('_bucket')) {
      if (le === undefined) throw new Error(`${family.name}: a bucket without le`);
      entry.buckets.push([le === '+Inf' ? Infinity : Number(le), s.value]);
    } else if (s.name.endsWith('_sum')) entry.sum = s.value;
    else entry.count = s.value;
  }
  for (const [key, { buckets, sum, count }] of series) {
    if (sum === undefined || count === undefined) throw new Error(`${family.name}${key}: no _sum or _count`);
    for (let i = 1; i < buckets.length; i++) {
      if (!(buckets[i]![0] > buckets[i - 1]![0]))
        throw new Error(`${family.name}${key}: buckets not ascending`);
      if (buckets[i]![1] < buckets[i - 1]![1])
        throw new Error(`${family.name}${key}: buckets not cumulative`);
    }
    const last = buckets[buckets.length - 1];
    if (!last || last[0] !== Infinity || last[1] !== count)
      throw new Error(`${family.name}${key}: the +Inf bucket is missing or differs from the count`);
  }
}

/** The value of the one sample named `name` whose labels include `labels`; undefined when none. */
export function sampleValue(
  families: Map<string, MetricFamily>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const family = families.get(name) ?? families.get(name.replace(/_(bucket|sum|count)$/, '')) ?? undefined;
  if (!family) throw new Error(`no metric family ${name}`);
  const matches = family.samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (matches.length > 1)
    throw new Error(`${name} ${JSON.stringify(labels)} matches ${matches.length} series`);
  return matches[0]?.value;
}
