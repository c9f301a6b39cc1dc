import { createHash, randomUUID } from 'node:crypto';

/** RFC 4122 uuid v5 (SHA-1) of `name` in `namespace`, as lua-resty-jit-uuid factory_v5. */
function uuidV5(name: string, namespace: string): string {
  const h = createHash('sha1')
    .update(Buffer.concat([Buffer.from(namespace.replace(/-/g, ''), 'hex'), Buffer.from(name)]))
    .digest();
  h[6] = ((h[6] as number) & 0x0f) | 0x50;
  h[8] = ((h[8] as number) & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

const KONG_ENTITIES_NS = 'fd02801f-0957-4a15-a55a-c8d9606f30b5';

/**
 * The id Kong's declarative loader gives an entity declared without one
 * (kong/db/schema/others/declarative_config.lua generate_ids / generate_uuid): uuid v5 of its
 * globally unique endpoint key (services' and routes' `name`, consumers' `username`) in the
 * namespace uuid v5(schema name, fd02801f-…); without such a key, a random uuid per start
 * (observed for keyauth_credentials on Kong 3.9.3).
 */
export function kongDeclarativeId(schema: string, endpointKey: string | undefined): string {
  if (endpointKey === undefined) return randomUUID();
  return uuidV5(endpointKey, uuidV5(schema, KONG_ENTITIES_NS));
}

/**
 * Deterministic UUID-shaped ids for entities declared without an `id`: Kong's declarative loader
 * also generates stable ids (uuid v5 of the entity's unique key), so restarts keep them.
 */
export function stableId(kind: string, key: string): string {
  const h = createHash('sha1').update(`${kind}:${key}`).digest('hex');
  const variant = ((parseInt(h.slice(16, 17), 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (s: string): boolean => UUID_RE.test(s);
