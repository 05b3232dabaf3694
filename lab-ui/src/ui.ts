/** Small DOM helpers: elements from a tag, attributes and children; tables; notes. */

type Child = Node | string | number | null | undefined | false;

/** Creates an element; `on*` attributes that are functions become listeners. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attributes: Record<string, unknown> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value as EventListener);
    else if (name === 'class') element.className = String(value);
    else if (value === true) element.setAttribute(name, '');
    else element.setAttribute(name, String(value));
  }
  append(element, ...children);
  return element;
}

export function append(parent: Element, ...children: Child[]): void {
  for (const child of children) if (child !== null && child !== undefined && child !== false) parent.append(child instanceof Node ? child : String(child));
}

/** A titled panel. */
export function card(title: string, subtitle?: string, ...children: Child[]): HTMLElement {
  return h('section', { class: 'card' }, h('header', { class: 'card-head' }, h('h3', {}, title), subtitle ? h('p', { class: 'muted' }, subtitle) : null), ...children);
}

/** A chart panel: a title and a canvas in a sized box. */
export function chartCard(title: string, subtitle?: string): { element: HTMLElement; canvas: HTMLCanvasElement } {
  const canvas = h('canvas');
  return { element: card(title, subtitle, h('div', { class: 'chart-box' }, canvas)), canvas };
}

/** Replaces the rows of a table body (or creates the table). */
export function table(headers: string[], rows: Child[][], attributes: Record<string, unknown> = {}): HTMLTableElement {
  return h(
    'table',
    { class: 'data', ...attributes },
    h('thead', {}, h('tr', {}, ...headers.map((title) => h('th', {}, title)))),
    h('tbody', {}, ...rows.map((cells) => h('tr', {}, ...cells.map((cell) => h('td', {}, cell))))),
  );
}

/** A callout. `kind` picks its colour. */
export function note(kind: 'info' | 'warn' | 'error', ...children: Child[]): HTMLElement {
  return h('div', { class: `note note-${kind}` }, ...children);
}

/**
 * A page's closing "what this shows" card: one line per takeaway, each drawn by the page from its
 * measured result. A line that says the result was inconclusive is marked as such.
 */
export function takeawaysCard(id: string, title: string, lines: readonly string[]): HTMLElement {
  return h('div', { class: 'card takeaways', id }, h('h3', {}, title), h('ul', {}, ...lines.map((line) => h('li', { class: /inconclusive/i.test(line) ? 'inconclusive' : null }, line))));
}

/** Labelled form field. */
export function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  return h('label', { class: 'field' }, h('span', { class: 'field-label' }, label), control, hint ? h('span', { class: 'field-hint' }, hint) : null);
}

export function numberInput(value: number, attributes: Record<string, unknown> = {}): HTMLInputElement {
  return h('input', { type: 'number', value, ...attributes });
}

export function select<T extends string>(options: readonly { value: T; label: string }[], value: T, attributes: Record<string, unknown> = {}): HTMLSelectElement {
  const element = h('select', attributes, ...options.map((option) => h('option', { value: option.value }, option.label)));
  element.value = value;
  return element;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Thousands separators and a fixed number of decimals. */
export function formatNumber(value: number | null | undefined, decimals = 0): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  return value.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${Math.round(bytes)} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(2)} MiB`;
}

/** A button that opens a JSON file and hands its text (and name) over; errors show beside it. */
export function jsonFileButton(label: string, id: string, onText: (text: string, name: string) => void): HTMLElement {
  const input = h('input', { type: 'file', accept: '.json,application/json', id, hidden: true });
  const error = h('span', { class: 'bad' });
  input.addEventListener('change', async () => {
    const file = input.files?.[0];
    if (!file) return;
    error.textContent = '';
    try {
      onText(await file.text(), file.name);
    } catch (problem) {
      error.textContent = `${file.name}: ${(problem as Error).message}`;
    }
    input.value = '';
  });
  return h('span', { class: 'actions' }, h('button', { class: 'ghost', onclick: () => input.click() }, label), input, error);
}

/** Parses JSON or says why not. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`not JSON: ${(error as Error).message}`);
  }
}
