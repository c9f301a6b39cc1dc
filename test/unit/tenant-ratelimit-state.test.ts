/**
 * tenant-ratelimit's admission record (plugins/tenant-ratelimit/state.ts), what access leaves
 * for log: it survives its codec unchanged, and anything that is not such a record (another
 * version, another plugin's value, a damaged string) decodes to nothing, so log releases
 * nothing it did not take.
 */
import test from 'ava';
import {
  RECORD,
  RECORD_KEY,
  decodeRecord,
  encodeRecord,
  type AdmissionRecord,
} from '../../plugins/tenant-ratelimit/state';

const record: AdmissionRecord = {
  v: 1,
  tenant: 'acme',
  lease: '0b6f3c1e-2f7a-4c1e-9d7b-2a5c8e9f1a3b',
  scope: 'cluster',
  charged: 1200,
  width: 1500,
  seat: 'local',
  limits: {
    requestsPerMinute: 60,
    requestBurst: 60,
    tokensPerMinute: 1000,
    tokenBurst: 1200,
    maxConcurrent: 4,
  },
  busy: false,
  handOff: 'asked',
};

test('a record survives its codec, through the spec kong.ctx.shared uses', (t) => {
  t.deepEqual(decodeRecord(encodeRecord(record)), record);
  t.deepEqual(RECORD.decode(RECORD.encode(record)), record);
  t.is(RECORD.sharedKey, RECORD_KEY);
  t.is(RECORD.plugin, 'tenant-ratelimit');
  // First in the chain's log phase: a seat may be what another request waits for.
  t.is(RECORD.order, 0);
});

test('records of earlier version 1 writers (no busy, no hand-off) still decode', (t) => {
  const { busy: _busy, handOff: _handOff, ...older } = record;
  t.deepEqual(decodeRecord(JSON.stringify(older)), older);
});

test('anything else decodes to nothing', (t) => {
  const variants: Array<[string, unknown]> = [
    ['another version', { ...record, v: 2 }],
    ['no version', { ...record, v: undefined }],
    ['an unknown scope', { ...record, scope: 'region' }],
    ['no lease', { ...record, lease: undefined }],
    ['a charge that is not a number', { ...record, charged: '1200' }],
    ['no limits', { ...record, limits: null }],
    ['a busy flag that is not a boolean', { ...record, busy: 'yes' }],
    ['an unknown hand-off state', { ...record, handOff: 'taken' }],
    ['another plugin’s value', { v: 1, tenant: 'acme', reservation: 'r1', tokens: 10 }],
  ];
  for (const [what, value] of variants) {
    t.is(decodeRecord(JSON.stringify(value)), undefined, what);
  }
  t.is(decodeRecord('{"v":1,'), undefined, 'a damaged string');
  t.is(decodeRecord(record), undefined, 'an object, not its JSON');
  t.is(decodeRecord(undefined), undefined, 'nothing left');
  t.is(decodeRecord(JSON.stringify([record])), undefined, 'a list');
});
