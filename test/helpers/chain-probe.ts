/**
 * Probing the whole chain as one tenant and looking for another's data in everything that came
 * back: status line, headers, body (every SSE event of a stream), and the request the upstream
 * received for the probe (what the model would have read). Used by test/isolation/chain-*.
 */
import { randomUUID } from 'node:crypto';
import type { MockUpstream, ReceivedRequest } from '../../mock-upstream/index';
import { send, type Sent } from './frontdoor';

export interface Probe {
  res: Sent;
  /** Every request any upstream of the run received for this probe (normally 0 or 1). */
  upstream: ReceivedRequest[];
  /** Names of the upstreams that received it (`main`, `dedicated`, `slow`). */
  upstreamNames: string[];
  /** The bytes the prober itself sent (path, headers, body): what it may see echoed. */
  sent: string;
}

export interface ProbeInit {
  method?: string;
  headers?: Array<[string, string]>;
  body?: string | object;
}

/** Sends one request with `key` (none when null) and finds what reached the upstreams. */
export async function probe(
  url: string,
  upstreams: Record<string, MockUpstream>,
  key: string | null,
  path: string,
  init: ProbeInit = {},
): Promise<Probe> {
  const testId = randomUUID();
  const headers: Array<[string, string]> = [
    ...(key ? ([['apikey', key]] as Array<[string, string]>) : []),
    ['x-test-id', testId],
    ...(init.headers ?? []),
  ];
  const res = await send(`${url}${path}`, {
    ...(init.method ? { method: init.method } : {}),
    headers,
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
  const upstream: ReceivedRequest[] = [];
  const upstreamNames: string[] = [];
  for (const [name, u] of Object.entries(upstreams)) {
    for (const r of u.received) {
      if (r.headers['x-test-id'] === testId) {
        upstream.push(r);
        upstreamNames.push(name);
      }
    }
  }
  const body =
    init.body === undefined
      ? ''
      : typeof init.body === 'string'
        ? init.body
        : JSON.stringify(init.body);
  const sent = [path, decodeSafely(path), JSON.stringify(headers), body].join('\n');
  return { res, upstream, upstreamNames, sent };
}

function decodeSafely(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** One thing of the victim's that must never reach the prober. */
export interface Secret {
  what: string;
  /** Literal text, or a pattern (figures, matched as whole numbers). */
  match: string | RegExp;
}

/** A number as it would appear in JSON or a header, not inside a longer number. */
export function figure(what: string, n: number): Secret {
  // Bounded by anything that is not part of a word or number, so a hex id holding the same
  // digits does not count.
  const s = String(n).replace('.', '\\.');
  return { what, match: new RegExp(`(?<![\\w.-])${s}(?![\\w.-])`) };
}

/** Everything the prober got back, as one text. */
export function exposure(p: Probe): string {
  return [
    String(p.res.status),
    JSON.stringify(p.res.headers),
    p.res.text,
    // What the upstream (the model) read for this probe, headers included.
    ...p.upstream.map(
      (r) => `${r.path}\n${JSON.stringify(r.headers)}\n${r.rawBody.toString('utf8')}`,
    ),
  ].join('\n');
}

/**
 * The victim's secrets found in what the prober got back. A secret the prober itself sent (it
 * typed the victim's id into a query, say) is not counted where it is only echoed: its presence
 * says nothing about the victim's data, and figures and other secrets still are.
 */
export function leaks(p: Probe, secrets: readonly Secret[]): string[] {
  const seen = exposure(p);
  const found: string[] = [];
  for (const s of secrets) {
    if (typeof s.match === 'string') {
      if (p.sent.includes(s.match)) continue;
      if (seen.includes(s.match)) found.push(s.what);
    } else if (s.match.test(seen) && !s.match.test(p.sent)) {
      found.push(s.what);
    }
  }
  return found;
}

/** The parts of a chat completion that identify one answer (ids of two mocks may collide). */
export function answerPrint(res: Sent): string | null {
  const j = res.json as
    { id?: string; created?: number; usage?: Record<string, unknown>; object?: string } | undefined;
  if (!j?.id || j.created === undefined) return null;
  return JSON.stringify([j.id, j.created, j.usage?.prompt_tokens, j.usage?.total_tokens]);
}

/** The text of every SSE `data:` event of a streamed answer (content deltas joined). */
export function streamedText(text: string): { content: string; events: number; done: boolean } {
  let content = '';
  let events = 0;
  let done = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith('data: ')) continue;
    const data = line.slice(6).trim();
    if (data === '[DONE]') {
      done = true;
      continue;
    }
    events++;
    try {
      const chunk = JSON.parse(data) as { choices?: Array<{ delta?: { content?: string } }> };
      content += chunk.choices?.[0]?.delta?.content ?? '';
    } catch {
      // not JSON: counted, its bytes are still searched by `leaks`
    }
  }
  return { content, events, done };
}
