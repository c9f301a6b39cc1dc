import test from 'ava';
import { Decoder, Encoder } from '@msgpack/msgpack';
import { hardenPluginServer, renameProtoKeys } from '../../lib/pluginserver/harden';

/** What Kong's lua-MessagePack sends for a header table with a `__proto__` key. */
function packedHeaders(): Uint8Array {
  const headers = Object.create(null) as Record<string, string[]>;
  headers['__proto__'] = ['1'];
  headers['x-tenant-id'] = ['acme'];
  return new Encoder().encode([1, 7, null, { EventId: 3, Data: headers }]);
}

test('a __proto__ key is renamed to a name no header can have, bytes otherwise untouched', (t) => {
  const input = packedHeaders();
  const out = renameProtoKeys(input);
  t.is(out.length, input.length);
  t.true(out.includes(Buffer.from('\0_proto__', 'latin1')));
  t.false(out.includes(Buffer.from('__proto__', 'latin1')));
});

test("after hardening, kong-pdk's decoder accepts the message instead of throwing", (t) => {
  // Importing the module patched the decoder already (as the plugin-server entry does); the
  // end-to-end isolation case 37 shows the crash and the fail-open without it.
  hardenPluginServer();
  const decoded = new Decoder().decode(packedHeaders()) as [
    number,
    number,
    null,
    { Data: Record<string, string[]> },
  ];
  t.deepEqual(Object.keys(decoded[3].Data).sort(), ['\0_proto__', 'x-tenant-id']);
  t.is(Object.getPrototypeOf(decoded[3].Data), Object.prototype, 'no prototype was replaced');
});

test('other decode errors are left alone', (t) => {
  hardenPluginServer();
  t.throws(() => new Decoder().decode(Uint8Array.from([0xc1])));
});
