/** `polling`, client side: the polling client core asking at a fixed interval. */
export { connectPolling } from '../long-polling/client.ts';
