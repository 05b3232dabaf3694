/**
 * The lab's shell: a sidebar of pages, hash routing (`#/compare`, `#/hol`, `#/backpressure`,
 * `#/learn`, `#/results`) and the server's status. Each page renders into `#app` and returns a
 * cleanup that stops its runs when the reader moves on.
 */
import { pruneCharts, describeCharts } from './charts.ts';
import { labState, serverInfo, type ServerInfo } from './lab.ts';
import { renderBackpressure } from './pages/backpressure.ts';
import { renderCompare } from './pages/compare.ts';
import { renderHol } from './pages/hol.ts';
import { renderLearn } from './pages/learn.ts';
import { renderResults } from './pages/results.ts';
import { h } from './ui.ts';

interface Page {
  id: string;
  title: string;
  blurb: string;
  render: (root: HTMLElement, server: ServerInfo) => (() => void) | void;
}

const PAGES: Page[] = [
  { id: 'compare', title: 'Compare', blurb: 'latency & throughput', render: renderCompare },
  { id: 'hol', title: 'Head-of-line', blurb: 'flows on one connection', render: renderHol },
  { id: 'backpressure', title: 'Backpressure', blurb: 'fast sender, slow reader', render: renderBackpressure },
  { id: 'learn', title: 'Learn', blurb: 'handshakes, frames, bytes', render: renderLearn },
  { id: 'results', title: 'Results', blurb: 'open a bench report', render: (root) => renderResults(root) },
];

const nav = document.querySelector<HTMLElement>('#nav')!;
const app = document.querySelector<HTMLElement>('#app')!;
const status = document.querySelector<HTMLElement>('#server-info')!;
labState.charts = describeCharts;
(window as unknown as { __lab: typeof labState }).__lab = labState;

for (const page of PAGES) nav.append(h('a', { href: `#/${page.id}`, 'data-page': page.id }, h('strong', {}, page.title), h('small', {}, page.blurb)));

let cleanup: (() => void) | void;

async function route(): Promise<void> {
  const id = location.hash.replace(/^#\/?/, '') || 'compare';
  const page = PAGES.find((p) => p.id === id) ?? PAGES[0]!;
  for (const link of nav.querySelectorAll('a')) link.classList.toggle('active', link.dataset.page === page.id);
  cleanup?.();
  app.replaceChildren();
  pruneCharts();
  document.title = `${page.title} · Switchyard lab`;
  labState.page = page.id;
  try {
    cleanup = page.render(app, await serverInfo());
  } catch (error) {
    app.append(h('div', { class: 'note note-error' }, `This page could not start: ${(error as Error).message}`));
  }
}

serverInfo().then(
  (server) => {
    status.replaceChildren(h('span', { class: 'dot ok' }), h('span', {}, `server ${server.version}`), h('small', {}, server.transports.join(' · ')));
  },
  (error: unknown) => status.replaceChildren(h('span', { class: 'dot bad' }), h('span', {}, `server unreachable: ${(error as Error).message}`)),
);
window.addEventListener('hashchange', () => void route());
void route();
