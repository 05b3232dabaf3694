/**
 * A TCP forwarder standing in for a load balancer: clients keep one URL while the test moves it
 * to another node (`pointAt`) and cuts the connections through it (`cutAll`), as a node's death does.
 */
import net from 'node:net';

export interface TcpProxy {
  readonly port: number;
  pointAt(port: number): void;
  cutAll(): void;
  /** Called at each accepted connection (a benchmark times from it). */
  onAccept(listener: () => void): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: number): Promise<TcpProxy> {
  let targetPort = target;
  let accepted: () => void = () => undefined;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    accepted();
    const outbound = net.connect(targetPort, '127.0.0.1');
    for (const socket of [inbound, outbound]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {
        inbound.destroy();
        outbound.destroy();
      });
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
    inbound.on('close', () => outbound.destroy());
    outbound.on('close', () => inbound.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    pointAt(port) {
      targetPort = port;
    },
    onAccept(listener) {
      accepted = listener;
    },
    cutAll() {
      for (const socket of sockets) socket.destroy();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
