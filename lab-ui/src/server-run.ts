/**
 * "Run on the server": a panel that asks the server to run a real experiment
 * (`POST /lab/experiments/<kind>`, server/experiments-api.ts), polls its progress, and hands the
 * JSON result to the page's renderer, the same one that draws an opened JSON file. The result can
 * be downloaded as the file `npm run experiment` would have written.
 */
import type { ExperimentCatalog, ExperimentEvent, ExperimentKind, ExperimentView } from '../server/experiments-api.ts';
import { labJson } from './lab.ts';
import { append, h, note, sleep } from './ui.ts';

export type { ExperimentCatalog, ExperimentEvent } from '../server/experiments-api.ts';

const POLL_MS = 300;

let catalog: Promise<ExperimentCatalog> | undefined;

/** The choices, defaults and limits the server's runners offer (fetched once). */
export function experimentCatalog(): Promise<ExperimentCatalog> {
  catalog ??= labJson<ExperimentCatalog>('/lab/experiments');
  return catalog;
}

/** What the page publishes for the browser test. */
export interface ServerRunState {
  state: 'idle' | 'running' | 'done' | 'failed';
  id?: string;
  events: number;
  error?: string;
}

export interface ServerRunConfig<R> {
  kind: ExperimentKind;
  /** The run button's label. */
  label: string;
  /** Builds the option fields from the server's catalog, and the request body from them. */
  controls: (catalog: ExperimentCatalog) => { element: HTMLElement; options: () => Record<string, unknown> };
  /** A progress line for an event, or null to keep the current one. */
  describe: (event: ExperimentEvent) => string | null;
  /** Draws a result: the page's renderer for loaded JSON. */
  show: (result: R) => void;
  /** A caveat to show beside the result (e.g. the path could not be impaired), or null. */
  caveat?: (result: R) => string | null;
}

/** The panel: options, Run / Stop, a progress line, a caveat and a Download JSON link. */
export function serverRunPanel<R extends { startedAt: string }>(config: ServerRunConfig<R>): { element: HTMLElement; state: ServerRunState; dispose: () => void } {
  const state: ServerRunState = { state: 'idle', events: 0 };
  const run = h('button', { class: 'primary', id: `${config.kind}-server-run` }, config.label);
  const stop = h('button', { class: 'ghost', disabled: true }, 'Stop');
  const progress = h('span', { class: 'muted', 'data-testid': `${config.kind}-server-progress` }, 'The server runs the experiment runner itself and streams its progress here.');
  const download = h('button', { class: 'ghost', hidden: true, 'data-testid': `${config.kind}-server-download` }, 'Download JSON');
  const caveat = h('div');
  let disposed = false;
  let saved: { text: string; name: string } | undefined;
  download.addEventListener('click', () => {
    if (!saved) return;
    const url = URL.createObjectURL(new Blob([saved.text], { type: 'application/json' }));
    h('a', { href: url, download: saved.name }).click();
    setTimeout(() => URL.revokeObjectURL(url), 1_000);
  });

  const finish = (view: ExperimentView) => {
    state.state = view.state === 'done' ? 'done' : 'failed';
    if (view.error) {
      state.error = view.error.message;
      progress.textContent = `Failed: ${view.error.message}`;
      progress.className = 'bad';
    }
    const result = view.result as R | undefined;
    if (!result) return;
    progress.textContent = `Done: experiment ${view.id} of ${new Date(view.startedAt).toLocaleTimeString()}.`;
    const warning = config.caveat?.(result);
    if (warning) caveat.replaceChildren(note('warn', warning));
    // The file `npm run experiment` writes: the same JSON, the same name pattern.
    saved = { text: `${JSON.stringify(result, null, 2)}\n`, name: `experiment-${config.kind}-${result.startedAt.replace(/[:.]/g, '-').slice(0, 19)}.json` };
    download.hidden = false;
    config.show(result);
  };

  run.addEventListener('click', async () => {
    Object.assign(state, { state: 'running', events: 0, id: undefined, error: undefined });
    run.disabled = true;
    download.hidden = true;
    caveat.replaceChildren();
    progress.className = 'muted';
    progress.textContent = 'Starting…';
    try {
      if (!options) throw new Error('the server has not said what it can run yet');
      let view = await labJson<ExperimentView>(`/lab/experiments/${config.kind}`, options());
      state.id = view.id;
      stop.disabled = false;
      for (;;) {
        for (const event of view.progress) progress.textContent = config.describe(event) ?? progress.textContent;
        state.events = view.next;
        if (view.state !== 'running' || disposed) break;
        await sleep(POLL_MS);
        view = await labJson<ExperimentView>(`/lab/experiments/${view.id}?since=${view.next}`);
      }
      if (!disposed) finish(view);
    } catch (error) {
      Object.assign(state, { state: 'failed', error: (error as Error).message });
      progress.textContent = (error as Error).message;
      progress.className = 'bad';
    } finally {
      run.disabled = false;
      stop.disabled = true;
    }
  });
  stop.addEventListener('click', () => {
    if (state.id) void labJson(`/lab/experiments/${state.id}`, undefined, 'DELETE').catch(() => undefined);
  });

  const element = h('div', { class: 'server-run', id: `${config.kind}-server` });
  const controls = h('div', {}, h('p', { class: 'empty' }, 'Asking the server what it can run…'));
  let options: (() => Record<string, unknown>) | undefined;
  void experimentCatalog().then(
    (catalog) => {
      const built = config.controls(catalog);
      controls.replaceChildren(built.element);
      options = built.options;
    },
    (error: Error) => controls.replaceChildren(note('error', `The server cannot run experiments: ${error.message}`)),
  );
  append(element, controls, h('div', { class: 'actions' }, run, stop, download, progress), caveat);
  // Leaving the page stops following the run; the server finishes it (or the next page may stop it).
  return { element, state, dispose: () => (disposed = true) };
}
