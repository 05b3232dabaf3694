// Placeholder lab page: shows what the server offers. The full lab (Compare, HOL, Backpressure,
// Learn, Results) is built on top of this in a later issue.
interface ServerInfo {
  version: string;
  transports: string[];
  urls: Record<string, string>;
  certificateSha256: string | null;
}

const info = document.querySelector<HTMLParagraphElement>('#server-info')!;
const app = document.querySelector<HTMLElement>('#app')!;

const response = await fetch('/info');
const server = (await response.json()) as ServerInfo;
info.textContent = `server ${server.version} · transports: ${server.transports.join(', ')}`;
const rows = Object.entries(server.urls)
  .map(([name, url]) => `<tr><th>${name}</th><td><code>${url}</code></td></tr>`)
  .join('');
app.innerHTML = `<table>${rows}</table>`;
