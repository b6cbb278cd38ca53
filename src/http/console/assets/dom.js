/**
 * Building the page. Every piece of data goes in as text (`textContent`, `setAttribute`), never as
 * HTML: record keys and values, topic names and problem details are shown, never parsed.
 */

/** An element with attributes (`on*` become listeners) and children (nodes, or strings as text). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value);
    else if (name === 'class') element.className = String(value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else if (child instanceof Node) element.appendChild(child);
    else element.appendChild(document.createTextNode(String(child)));
  }
}

/** A link to a view of this console: the path is made of encoded parts, so a name cannot leave it. */
export function viewLink(parts, ...children) {
  return h('a', { href: `#/${parts.map((p) => encodeURIComponent(String(p))).join('/')}` }, ...children);
}

/**
 * A table: `columns` are `{label, num?}`; each row is a list of cells (nodes or text), or an
 * object `{cells, attributes}`.
 */
export function table(columns, rows, attributes = {}) {
  return h(
    'table',
    attributes,
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        columns.map((c) => h('th', { class: c.num ? 'num' : undefined }, c.label)),
      ),
    ),
    h(
      'tbody',
      {},
      rows.map((row) => {
        const cells = Array.isArray(row) ? row : row.cells;
        const rowAttributes = Array.isArray(row) ? {} : (row.attributes ?? {});
        return h(
          'tr',
          rowAttributes,
          cells.map((cell, i) => h('td', { class: columns[i]?.num ? 'num' : undefined }, cell)),
        );
      }),
    ),
  );
}

export function card(label, value, attributes = {}) {
  return h(
    'div',
    { class: 'card', ...attributes },
    h('div', { class: 'label' }, label),
    h('div', { class: 'value' }, value),
  );
}

/** A problem answer (or any error) as a box: its code and detail, as text. */
export function errorBox(error) {
  const problem = error?.problem;
  const code = problem?.code ?? error?.name ?? 'Error';
  const detail = problem?.detail ?? error?.message ?? String(error);
  return h('div', { class: 'error', role: 'alert' }, h('strong', {}, code), ': ', detail);
}

/** Replaces an element's children. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

const SVG = 'http://www.w3.org/2000/svg';

/**
 * A small line chart of `values` (undefined: not measured, drawn as a gap), scaled to the
 * largest; presentation attributes only (the page's policy allows no inline style).
 */
export function sparkline(values, { width = 120, height = 24, label = '' } = {}) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(height));
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('class', 'sparkline');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  const defined = values.filter((v) => v !== undefined && Number.isFinite(v));
  const max = Math.max(1e-9, ...defined);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const segments = [];
  let points = [];
  values.forEach((v, i) => {
    if (v === undefined || !Number.isFinite(v)) {
      if (points.length > 0) segments.push(points);
      points = [];
      return;
    }
    points.push(`${(i * step).toFixed(1)},${(height - 1 - (v / max) * (height - 2)).toFixed(1)}`);
  });
  if (points.length > 0) segments.push(points);
  for (const segment of segments) {
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('points', segment.length === 1 ? `${segment[0]} ${segment[0]}` : segment.join(' '));
    line.setAttribute('fill', 'none');
    line.setAttribute('stroke', '#1f6feb');
    line.setAttribute('stroke-width', '1.5');
    svg.appendChild(line);
  }
  const title = document.createElementNS(SVG, 'title');
  title.textContent = label;
  svg.appendChild(title);
  return svg;
}
