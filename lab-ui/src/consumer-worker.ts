/** The slow consumer (consumer.ts) in a worker: commands in, reports out. */
import { startConsumer, type ConsumerCommand, type ConsumerReport } from './consumer.ts';

const scope = self as unknown as { postMessage(report: ConsumerReport): void; onmessage: ((event: MessageEvent<ConsumerCommand>) => void) | null };
let consumer: { stop(): void } | undefined;

scope.onmessage = (event) => {
  const command = event.data;
  if (command.type === 'stop') consumer?.stop();
  else consumer ??= startConsumer(command.transport, command.costMs, (report) => scope.postMessage(report));
};
