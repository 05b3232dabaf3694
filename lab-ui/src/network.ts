/**
 * The network a page's live runs cross. On plain loopback nothing is lost or delayed. When the
 * server runs as root on Linux it can start a live impaired network (`/lab/experiments/network`:
 * a second server with the lab, in a namespace behind the TUN forwarder); the lab then reopens
 * through it, and every connection of this browser (WebSocket, long-polling, WebTransport) crosses
 * the forwarder. Where that cannot run, the chooser says why.
 */
import type { NetworkStatus } from '../../benchmarks/experiments/live-network.ts';
import { labJson } from './lab.ts';
import { field, h, note, select } from './ui.ts';

/** The impaired network this page was opened through (`?network=` of the live network's URL), or null. */
export function currentNetwork(): string | null {
  return new URLSearchParams(location.search).get('network');
}

let offer: Promise<NetworkStatus> | undefined;

/** What the server offers (`GET /lab/experiments/network`), asked once per page load. */
export function networkOffer(): Promise<NetworkStatus> {
  offer ??= labJson<NetworkStatus>('/lab/experiments/network');
  return offer;
}

/** What the live runs here can and cannot show, one sentence for the page's head. */
export function networkNote(): HTMLElement {
  const network = currentNetwork();
  if (network)
    return note(
      'info',
      h('strong', {}, `Network: ${network}. `),
      'This lab was opened through the server’s impaired path (a TUN forwarder between namespaces): every connection of this browser, TCP and QUIC alike, meets the same delay and loss.',
    );
  return note(
    'info',
    h('strong', {}, 'Network: loopback. '),
    'Nothing is lost or delayed here, so runs show CPU and protocol costs and blocking behind large messages, not loss. Blocking after a ',
    h('em', {}, 'lost packet'),
    ' (where WebTransport channels help and one TCP connection cannot) needs a lossy network: choose one below when the server offers it; elsewhere run ',
    h('code', {}, 'npm run experiment -- hol --loss 2 --delay 20'),
    ' as root on Linux and open its JSON on the Head-of-line page.',
  );
}

/**
 * The chooser: loopback, or a profile of the live network. Picking a profile starts the network on
 * the server and reopens this page through it.
 */
export function networkChooser(): HTMLElement {
  const status = h('span', { class: 'muted', id: 'network-status' }, currentNetwork() ? `this page runs through: ${currentNetwork()}` : 'checking what the server offers…');
  const choose = select([{ value: 'loopback', label: 'loopback' }], 'loopback', { name: 'network', disabled: true });
  const element = h('div', { class: 'network-choice' }, field('Network', choose, 'what this browser’s connections cross'), status);
  if (currentNetwork()) {
    choose.replaceChildren(h('option', { value: 'current' }, currentNetwork()!));
    return element;
  }
  networkOffer().then(
    (offer) => {
      for (const profile of offer.profiles) choose.append(h('option', { value: profile.id, disabled: !offer.available }, `${profile.label}${offer.available ? '' : ' (unavailable)'}`));
      choose.disabled = !offer.available;
      status.textContent = offer.available ? 'a lossy network reopens this page through the server’s impaired path' : `no impaired network here: ${offer.reason}. A result recorded elsewhere opens on the Head-of-line page.`;
    },
    (error: unknown) => {
      status.textContent = `no impaired network here: ${(error as Error).message}`;
    },
  );
  choose.addEventListener('change', async () => {
    if (choose.value === 'loopback') return;
    choose.disabled = true;
    status.textContent = 'starting the impaired network on the server (a second server in a namespace, ~10 s)…';
    try {
      const started = await labJson<NetworkStatus>('/lab/experiments/network', { profile: choose.value });
      location.href = `${started.active!.labUrl}${location.hash}`;
    } catch (error) {
      status.textContent = `could not start it: ${(error as Error).message}`;
      choose.value = 'loopback';
      choose.disabled = false;
    }
  });
  return element;
}
