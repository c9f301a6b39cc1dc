/**
 * Redis Cluster's key-to-slot mapping (CRC16/XMODEM of the hash tag, mod 16384), as in the
 * cluster specification: if the key holds a `{...}` with at least one character inside, only
 * the part between the first `{` and the next `}` is hashed. Used to prove that all keys one
 * script touches land in one slot, so the same code runs on Redis Cluster.
 */
export const CLUSTER_SLOTS = 16384;

const CRC16_TABLE: readonly number[] = (() => {
  const table: number[] = [];
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    table.push(crc);
  }
  return table;
})();

export function crc16(data: Buffer): number {
  let crc = 0;
  for (const byte of data) {
    crc = ((crc << 8) & 0xffff) ^ (CRC16_TABLE[((crc >> 8) ^ byte) & 0xff] ?? 0);
  }
  return crc;
}

/** The part of `key` Redis Cluster hashes: the hash tag when there is a non-empty one. */
export function hashTagOf(key: string): string {
  const open = key.indexOf('{');
  if (open === -1) return key;
  const close = key.indexOf('}', open + 1);
  if (close === -1 || close === open + 1) return key;
  return key.slice(open + 1, close);
}

export function hashSlot(key: string): number {
  return crc16(Buffer.from(hashTagOf(key), 'utf8')) % CLUSTER_SLOTS;
}
