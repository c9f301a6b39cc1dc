/** Reading and parsing request bodies, shared by the endpoints and the control API. */
import type { IncomingMessage } from 'node:http';
import { InvalidRequestError } from './openai-error';

export function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** The parsed JSON of a body, or undefined when it is empty or not JSON (for recording). */
export function tryParseJson(raw: Buffer): unknown {
  if (raw.length === 0) return undefined;
  try {
    return JSON.parse(raw.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

// OpenAI's own wording for a body it cannot parse.
const UNPARSEABLE_JSON_MESSAGE =
  "We could not parse the JSON body of your request. (HINT: This likely means you aren't " +
  'using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was ' +
  'sent was not valid JSON.)';

/** The body as a JSON object, or the 400 OpenAI answers for anything else. */
export function requireJsonObject(raw: Buffer): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new InvalidRequestError(UNPARSEABLE_JSON_MESSAGE);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new InvalidRequestError(UNPARSEABLE_JSON_MESSAGE);
  }
  return parsed as Record<string, unknown>;
}

/**
 * The body as a JSON object for a provider stub (Anthropic, Cohere, Bedrock), or `invalid(…)`,
 * the provider's own 400, naming what is wrong.
 */
export function providerJsonObject(
  raw: Buffer,
  invalid: (message: string) => Error,
): Record<string, unknown> {
  const parsed = tryParseJson(raw);
  if (parsed === undefined) throw invalid('the body is not valid JSON');
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw invalid('the body must be a JSON object');
  return parsed as Record<string, unknown>;
}
