/**
 * The layers, checked on the import graph (every static, re-export and dynamic import, as
 * TypeScript's own pre-parser reads them): the core (server/, transports/, certs/) reaches no file
 * of the lab, the benchmarks or the app, and no module imports itself through a circle.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = import.meta.dirname;
const FOLDERS = ['server', 'transports', 'certs', 'app', 'lab-ui', 'benchmarks', 'test-support'];
const CORE = ['server/', 'transports/', 'certs/'];
const OUTSIDE_CORE = ['lab-ui/', 'benchmarks/', 'app/'];

function sources(folder: string): string[] {
  return readdirSync(path.join(ROOT, folder), { recursive: true, encoding: 'utf8' })
    .filter((file) => /\.ts$/.test(file) && !file.includes('node_modules') && !file.split(path.sep).includes('dist'))
    .map((file) => path.posix.join(folder, file.split(path.sep).join('/')));
}

/** File → the repository files it imports (packages and node: modules left out). */
function importGraph(files: readonly string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const { importedFiles } = ts.preProcessFile(readFileSync(path.join(ROOT, file), 'utf8'), true, true);
    const targets = importedFiles.map((i) => i.fileName).filter((name) => name.startsWith('.')).map((name) => path.posix.normalize(path.posix.join(path.posix.dirname(file), name)));
    graph.set(file, targets);
  }
  return graph;
}

/** Strongly connected components with more than one file, or a file importing itself (Tarjan). */
function circles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const indices = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string) => {
    indices.set(node, index);
    low.set(node, index++);
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!graph.has(next)) continue;
      if (!indices.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) low.set(node, Math.min(low.get(node)!, indices.get(next)!));
    }
    if (low.get(node) === indices.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1 || (graph.get(node) ?? []).includes(node)) found.push(component.sort());
    }
  };
  for (const node of graph.keys()) if (!indices.has(node)) visit(node);
  return found;
}

/** Import trails from a core file to a file outside the core. */
function breaches(graph: Map<string, string[]>): string[] {
  const offending: string[] = [];
  for (const start of [...graph.keys()].filter((file) => CORE.some((prefix) => file.startsWith(prefix)))) {
    const seen = new Set<string>([start]);
    const queue: string[][] = [[start]];
    while (queue.length > 0) {
      const trail = queue.shift()!;
      for (const next of graph.get(trail.at(-1)!) ?? []) {
        if (seen.has(next)) continue;
        seen.add(next);
        if (OUTSIDE_CORE.some((prefix) => next.startsWith(prefix))) offending.push([...trail, next].join(' → '));
        else queue.push([...trail, next]);
      }
    }
  }
  return offending;
}

const graph = importGraph([...FOLDERS.flatMap(sources), ...readdirSync(ROOT).filter((f) => f.endsWith('.ts'))]);

describe('layers', () => {
  it('reads the graph: every relative import names a file that exists', () => {
    const missing = [...graph].flatMap(([file, targets]) => targets.filter((t) => !graph.has(t) && !existsSync(path.join(ROOT, t))).map((t) => `${file} → ${t}`));
    expect(missing).toEqual([]);
    // The walk sees real edges (the check below would pass vacuously on an empty graph).
    expect(graph.get('lab-ui/server/plugin.ts')).toContain('server/index.ts');
  });

  it('no file of the core (server/, transports/, certs/) reaches lab-ui/, benchmarks/ or app/, tests included', () => {
    expect(breaches(graph)).toEqual([]);
  });

  it('has no import circle anywhere in the repository', () => {
    expect(circles(graph)).toEqual([]);
  });

  it('finds a circle and a layer breach when there is one (the checks can fail)', () => {
    const broken = new Map([
      ['server/index.ts', ['server/a.ts']],
      ['server/a.ts', ['server/index.ts', 'lab-ui/server/plugin.ts']],
    ]);
    expect(circles(broken)).toEqual([['server/a.ts', 'server/index.ts']]);
    expect(breaches(broken)).toContain('server/index.ts → server/a.ts → lab-ui/server/plugin.ts');
  });
});
