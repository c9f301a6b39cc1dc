/** What the server hands an endpoint: the exchange, the knobs in force, and a pause. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { MockKnobs } from './knobs';

export interface EndpointContext {
  req: IncomingMessage;
  res: ServerResponse;
  rawBody: Buffer;
  /** Knobs as they were when the request arrived. */
  knobs: Readonly<MockKnobs>;
  /** Unique per server instance; used in response ids and `x-request-id`. */
  requestId: string;
  /** Resolves true after `ms`, or false early when the client left or the server is closing. */
  pause(ms: number): Promise<boolean>;
  /** A `cut` failure: the answer is sent in part, then the socket is reset (chat only). */
  cutAfterEvents?: number;
  /**
   * Called once per chat answer whose `usage` reached the client whole (a JSON answer, or a
   * stream's final usage event): what the upstream billed, summed per tenant by the server.
   */
  onUsage?: (usage: { prompt_tokens: number; completion_tokens: number }) => void;
}

export type Endpoint = (ctx: EndpointContext) => Promise<void>;

/**
 * Writes `items` as NDJSON, one JSON object per line, `streamChunkDelayMs` apart, and ends the
 * answer (Cohere's and Ollama's streams). False when the client left first: nothing was billed.
 */
export async function writeNdjson(
  ctx: EndpointContext,
  items: readonly object[],
): Promise<boolean> {
  for (const [i, item] of items.entries()) {
    if (
      i > 0 &&
      ctx.knobs.streamChunkDelayMs > 0 &&
      !(await ctx.pause(ctx.knobs.streamChunkDelayMs))
    )
      return false;
    ctx.res.write(`${JSON.stringify(item)}\n`);
  }
  ctx.res.end();
  return true;
}
