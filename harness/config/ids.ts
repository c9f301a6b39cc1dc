import { createHash } from 'node:crypto';

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
