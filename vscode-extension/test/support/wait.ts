// Waiting for a condition in tests: checks it after every turn of the event loop (and at least
// every 10 ms) until it holds or the time is up. The failure names what was awaited.

export interface WaitOptions {
  timeoutMs?: number;
  /** What is awaited, for the failure message (a function to describe the state at timeout). */
  what: string | (() => string);
}

export async function waitFor(condition: () => boolean, options: WaitOptions): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) {
      const what = typeof options.what === "function" ? options.what() : options.what;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Resolves with the first value `produce` returns that is not undefined. */
export async function waitForValue<T>(produce: () => T | undefined, options: WaitOptions): Promise<T> {
  let value: T | undefined;
  await waitFor(() => (value = produce()) !== undefined, options);
  return value as T;
}
