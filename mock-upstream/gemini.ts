/**
 * Gemini's `generateContent` and `streamGenerateContent` (Vertex AI paths,
 * `/v1/projects/<p>/locations/<l>/publishers/google/models/<model>:<operation>`), for Kong's
 * `ai-proxy` with provider `gemini`. It validates the request as Gemini does — `contents` of
 * roles `user` and `model` only, each with text `parts` (a `system` role is refused: the system
 * prompt is `systemInstruction`) — and answers in Gemini's shapes: one `GenerateContentResponse`,
 * or, streamed, a JSON array of them (`application/json`, as Gemini streams without `alt=sse`)
 * whose every element carries the cumulative `usageMetadata`. The answer is the chat endpoint's
 * (mockAnswerText), counted by the same tokenizer, so a test can compare the gateway's ledger
 * with what this "provider" billed (`onUsage`). Errors use Gemini's body: `{"error":{code,
 * message, status}}`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { mockAnswerText, contentDeltas } from './chat';
import { decodeTokens, encodeText } from '../lib/tokens/tokenize';

const BILLING_MODEL = 'gpt-4o-mini';
const PATH =
  /^\/v1\/projects\/[^/]+\/locations\/[^/]+\/publishers\/google\/models\/([^/:]+):(generateContent|streamGenerateContent)$/;

export interface GeminiUsage {
  promptTokenCount: number;
  candidatesTokenCount: number;
  totalTokenCount: number;
}

class GeminiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

interface GeminiRequest {
  model: string;
  stream: boolean;
  system: string;
  contents: Array<{ role: 'user' | 'model'; text: string }>;
  maxOutputTokens: number | undefined;
}

function parse(path: string, rawBody: Buffer): GeminiRequest {
  const m = PATH.exec(path);
  if (!m) throw new GeminiError(404, `unknown path ${path}`);
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(rawBody.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new GeminiError(400, 'Invalid JSON payload received.');
  }
  const textOf = (parts: unknown, where: string): string => {
    if (!Array.isArray(parts) || parts.length === 0)
      throw new GeminiError(400, `${where}.parts: must be a non-empty array`);
    return parts
      .map((p: unknown, i) => {
        const part = p as { text?: unknown } | null;
        if (!part || typeof part.text !== 'string')
          throw new GeminiError(
            400,
            `${where}.parts[${i}]: only text parts are accepted by this stub`,
          );
        return part.text;
      })
      .join('');
  };
  const contents = body.contents;
  if (!Array.isArray(contents) || contents.length === 0)
    throw new GeminiError(400, 'contents: must be a non-empty array');
  const parsed = contents.map((c: unknown, i): GeminiRequest['contents'][number] => {
    const content = c as { role?: unknown; parts?: unknown } | null;
    if (!content || (content.role !== 'user' && content.role !== 'model'))
      throw new GeminiError(
        400,
        `contents[${i}].role: Please use a valid role: user, model (got ${JSON.stringify(content?.role)})`,
      );
    return { role: content.role, text: textOf(content.parts, `contents[${i}]`) };
  });
  const instruction = body.systemInstruction as { parts?: unknown } | undefined;
  const config = body.generationConfig as { maxOutputTokens?: unknown } | undefined;
  const max = config?.maxOutputTokens;
  return {
    model: m[1] ?? '',
    stream: m[2] === 'streamGenerateContent',
    system: instruction === undefined ? '' : textOf(instruction.parts, 'systemInstruction'),
    contents: parsed,
    maxOutputTokens: typeof max === 'number' && max > 0 ? max : undefined,
  };
}

/** Serves one Gemini request; `onUsage` gets what the "provider" billed. */
export function geminiGenerate(
  req: IncomingMessage,
  res: ServerResponse,
  rawBody: Buffer,
  onUsage: (usage: GeminiUsage) => void,
): void {
  let r: GeminiRequest;
  try {
    r = parse(req.url ?? '', rawBody);
  } catch (e) {
    const status = e instanceof GeminiError ? e.status : 500;
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        error: { code: status, message: String((e as Error).message), status: 'INVALID_ARGUMENT' },
      }),
    );
    return;
  }
  const lastUser = [...r.contents].reverse().find((c) => c.role === 'user')?.text ?? '';
  const full = encodeText(mockAnswerText(lastUser), BILLING_MODEL);
  const tokens = r.maxOutputTokens !== undefined ? full.slice(0, r.maxOutputTokens) : full;
  let prompt = r.system ? encodeText(r.system, BILLING_MODEL).length : 0;
  for (const c of r.contents) prompt += 2 + encodeText(c.text, BILLING_MODEL).length;
  const usage = (candidates: number): GeminiUsage => ({
    promptTokenCount: prompt,
    candidatesTokenCount: candidates,
    totalTokenCount: prompt + candidates,
  });
  const element = (text: string, candidates: number, last: boolean) => ({
    candidates: [
      {
        content: { parts: [{ text }], role: 'model' },
        ...(last ? { finishReason: tokens.length < full.length ? 'MAX_TOKENS' : 'STOP' } : {}),
        index: 0,
      },
    ],
    usageMetadata: usage(candidates),
    modelVersion: r.model,
  });
  res.writeHead(200, { 'content-type': 'application/json; charset=UTF-8' });
  if (!r.stream) {
    res.end(JSON.stringify(element(decodeTokens(tokens, BILLING_MODEL).text, tokens.length, true)));
  } else {
    const deltas = contentDeltas(tokens, BILLING_MODEL);
    let sent = 0;
    res.write('[');
    deltas.forEach((text, i) => {
      sent += 1;
      const last = i === deltas.length - 1;
      // Cumulative counts: the tokens sent so far (one per delta, the last one takes the rest).
      const count = last ? tokens.length : Math.min(sent, tokens.length);
      res.write(`${i > 0 ? ',\r\n' : ''}${JSON.stringify(element(text, count, last))}`);
    });
    res.end(']');
  }
  onUsage(usage(tokens.length));
}
