/** One chat completion sent to a gateway, timed to its first byte and its end (the benchmarks). */
import http from 'node:http';

export interface Sample {
  ms: number;
  ttfbMs: number;
  status: number;
  id: string;
}

export function sendChat(
  url: string,
  key: string,
  body: string,
  agent: http.Agent,
): Promise<Sample> {
  const t0 = process.hrtime.bigint();
  const since = () => Number(process.hrtime.bigint() - t0) / 1e6;
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${url}/v1/chat/completions`,
      {
        method: 'POST',
        agent,
        headers: {
          apikey: key,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        let ttfbMs = -1;
        res.on('data', () => {
          if (ttfbMs < 0) ttfbMs = since();
        });
        res.on('end', () =>
          resolve({
            ms: since(),
            ttfbMs: ttfbMs < 0 ? since() : ttfbMs,
            status: res.statusCode ?? 0,
            id: String(res.headers['x-kong-request-id'] ?? ''),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
