import test from 'ava';
import {
  parseTenantId,
  tryParseTenantId,
  isInvalidTenantIdError,
} from '../../lib/tenant/tenant-id';

test('accepts lowercase ids with digits, dash and underscore', (t) => {
  for (const id of ['acme', 'globex-42', 'a', 'tenant_7', '0abc', 'x'.repeat(64)]) {
    t.is(parseTenantId(id) as string, id);
  }
});

const hostile = [
  '',
  'Acme',
  'ACME',
  '-acme',
  '_acme',
  'acme corp',
  'acme\r\nx-tenant-id: globex',
  'acme}{t:globex',
  '{t:globex}',
  'acme:globex',
  'acme" || tenant_id != "',
  "acme' or 1=1",
  'acme\\',
  'acme/../globex',
  'acme*',
  'ａｃｍｅ',
  'acme\u0000',
  'x'.repeat(65),
];

for (const id of hostile) {
  test(`refuses ${JSON.stringify(id).slice(0, 40)}`, (t) => {
    const e = t.throws(() => parseTenantId(id));
    t.true(isInvalidTenantIdError(e));
    t.false(e?.message.includes(id) && id.length > 0, 'message does not echo the raw input');
    t.is(tryParseTenantId(id), undefined);
  });
}

test('refuses non-strings', (t) => {
  for (const v of [undefined, null, 42, {}, ['acme']]) t.throws(() => parseTenantId(v));
});
