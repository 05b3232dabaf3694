/**
 * Chart components shared by every page (Compare, HOL, Backpressure, Learn, Results): a few
 * configured Chart.js shapes with one look. Every chart is registered under an id so the page can
 * redraw it and the browser test can read what it holds (`window.__lab.charts()`).
 */
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Filler,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  LogarithmicScale,
  PointElement,
  ScatterController,
  Tooltip,
  type ChartConfiguration,
  type ChartDataset,
} from 'chart.js';

Chart.register(BarController, BarElement, CategoryScale, Filler, Legend, LinearScale, LineController, LineElement, LogarithmicScale, PointElement, ScatterController, Tooltip);
Chart.defaults.font.family = getComputedStyle(document.documentElement).getPropertyValue('--font').trim() || 'system-ui, sans-serif';
Chart.defaults.font.size = 11;
Chart.defaults.color = '#5b6478';
Chart.defaults.borderColor = 'rgba(120, 130, 160, 0.16)';
Chart.defaults.animation = false;
Chart.defaults.maintainAspectRatio = false;
Chart.defaults.plugins.legend.labels.boxWidth = 10;
Chart.defaults.plugins.legend.labels.boxHeight = 10;
Chart.defaults.plugins.legend.labels.usePointStyle = true;

/** One colour per series kind, stable across pages. */
export const PALETTE = ['#3b6cf6', '#e8762c', '#15a37a', '#c2417c', '#8a5cf6', '#d3a21a', '#2aa6c8', '#6b7280', '#9c5b2e'];

const registry = new Map<string, Chart>();

export type Point = { x: number; y: number };

interface AxisOptions {
  title: string;
  log?: boolean;
  min?: number;
  max?: number;
  /** Ticks in B / KiB / MiB. */
  bytes?: boolean;
}

function formatBytesTick(value: number | string): string {
  const n = Number(value);
  if (n >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KiB`;
  return `${n} B`;
}

function axis({ title, log, min, max, bytes }: AxisOptions) {
  return {
    type: log ? ('logarithmic' as const) : ('linear' as const),
    title: { display: true, text: title },
    ...(min === undefined ? {} : { min }),
    ...(max === undefined ? {} : { max }),
    // Unrotated labels, skipped where they would overlap (log axes label every 1–9 × 10ⁿ otherwise).
    ticks: { maxTicksLimit: 8, autoSkip: true, autoSkipPadding: 10, maxRotation: 0, ...(bytes ? { callback: formatBytesTick } : {}) },
  };
}

function mount(id: string, canvas: HTMLCanvasElement, config: ChartConfiguration): Chart {
  registry.get(id)?.destroy();
  const chart = new Chart(canvas, config);
  registry.set(id, chart);
  return chart;
}

/** A scatter or line of {x, y} series (latency over time, CDF, rates, queue depth). */
export function xyChart(id: string, canvas: HTMLCanvasElement, options: { x: AxisOptions; y: AxisOptions; line?: boolean }): Chart {
  return mount(id, canvas, {
    type: options.line ? 'line' : 'scatter',
    data: { datasets: [] },
    options: {
      parsing: false,
      normalized: true,
      scales: { x: axis(options.x), y: axis(options.y) },
      elements: { point: { radius: options.line ? 0 : 1.6, hoverRadius: 4 }, line: { borderWidth: 1.8, tension: 0 } },
      plugins: { legend: { position: 'bottom' } },
      interaction: { mode: 'nearest', intersect: false },
    },
  });
}

/** Bars over category labels (histogram bins, per-transport figures). */
export function barChart(id: string, canvas: HTMLCanvasElement, options: { x: string; y: AxisOptions; stacked?: boolean }): Chart {
  return mount(id, canvas, {
    type: 'bar',
    data: { labels: [], datasets: [] },
    options: {
      scales: { x: { title: { display: true, text: options.x }, stacked: options.stacked ?? false }, y: { ...axis(options.y), stacked: options.stacked ?? false } },
      plugins: { legend: { position: 'bottom' } },
      datasets: { bar: { borderRadius: 3, maxBarThickness: 38 } },
    },
  });
}

/** A dataset styled with the palette colour `index`. */
export function series(label: string, data: Point[] | number[], index: number, extra: Partial<ChartDataset<'line'>> = {}): ChartDataset<'line', Point[] | number[]> {
  const color = PALETTE[index % PALETTE.length]!;
  return { label, data, borderColor: color, backgroundColor: `${color}cc`, pointBackgroundColor: color, ...extra } as ChartDataset<'line', Point[] | number[]>;
}

/** Replaces a chart's datasets (and labels) and redraws without animation. */
export function setData(chart: Chart, datasets: ChartDataset<'line', Point[] | number[]>[], labels?: string[]): void {
  chart.data.datasets = datasets as typeof chart.data.datasets;
  if (labels) chart.data.labels = labels;
  chart.update('none');
}

export function getChart(id: string): Chart | undefined {
  return registry.get(id);
}

/** Drops charts whose canvas left the page (a page was closed). */
export function pruneCharts(): void {
  for (const [id, chart] of registry) {
    if (!chart.canvas.isConnected) {
      chart.destroy();
      registry.delete(id);
    }
  }
}

/** What each live chart holds, for the browser test and for debugging from the console. */
export function describeCharts(): { id: string; datasets: { label: string; points: number }[] }[] {
  return [...registry].map(([id, chart]) => ({
    id,
    datasets: chart.data.datasets.map((dataset) => ({ label: String(dataset.label ?? ''), points: (dataset.data as unknown[]).filter((v) => v !== null && v !== 0 && v !== undefined).length })),
  }));
}
