/**
 * AWS's binary event stream (`application/vnd.amazon.eventstream`), as Bedrock's ConverseStream
 * sends it: each message is its total length, its headers' length and the CRC32 of those eight
 * bytes, the headers (string-typed: `:event-type`, `:content-type`, `:message-type`), a JSON
 * payload and the CRC32 of everything before it. Kong's ai-proxy decodes it
 * (kong/tools/aws_stream.lua); token-meter's usage reader finds the `metadata` event's usage in
 * the raw bytes.
 */
import zlib from 'node:zlib';

function stringHeader(name: string, value: string): Buffer {
  const n = Buffer.from(name);
  const v = Buffer.from(value);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(v.length);
  return Buffer.concat([Buffer.from([n.length]), n, Buffer.from([7]), len, v]);
}

/** One event message of type `eventType` with `payload` as its JSON body. */
export function eventStreamMessage(eventType: string, payload: object): Buffer {
  const headers = Buffer.concat([
    stringHeader(':event-type', eventType),
    stringHeader(':content-type', 'application/json'),
    stringHeader(':message-type', 'event'),
  ]);
  const body = Buffer.from(JSON.stringify(payload));
  const prelude = Buffer.alloc(8);
  prelude.writeUInt32BE(12 + headers.length + body.length + 4, 0);
  prelude.writeUInt32BE(headers.length, 4);
  const preludeCrc = Buffer.alloc(4);
  preludeCrc.writeUInt32BE(zlib.crc32(prelude));
  const head = Buffer.concat([prelude, preludeCrc, headers, body]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(head));
  return Buffer.concat([head, crc]);
}
