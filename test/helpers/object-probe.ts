/**
 * One request of a tenant (key-auth key `<tenant>-key`) through a front door, and what of it
 * reached the mock upstream (matched by a per-request `x-test-id`): the stored-objects suites'
 * probe (test/isolation/provider-state.test.ts, provider-objects.test.ts).
 */
import { randomUUID } from 'node:crypto';
import { send, type FrontDoor, type Sent } from './frontdoor';

export interface Probe {
  res: Sent;
  upstream: Array<{ method: string; path: string; body: string; auth: string | undefined }>;
}

export async function probe(
  door: FrontDoor,
  tenant: string,
  method: string,
  pathname: string,
  body?: object | string,
  headers: Record<string, string> = {},
): Promise<Probe> {
  const id = randomUUID();
  const res = await send(`${door.url}${pathname}`, {
    method,
    headers: { apikey: `${tenant}-key`, 'x-test-id': id, ...headers },
    ...(body === undefined ? {} : { body }),
  });
  const upstream = door.upstream.received
    .filter((r) => r.headers['x-test-id'] === id)
    .map((r) => ({
      method: r.method,
      path: r.path,
      body: r.rawBody.toString('utf8'),
      auth: r.headers.authorization as string | undefined,
    }));
  return { res, upstream };
}
