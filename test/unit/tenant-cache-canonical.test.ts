/** tenant-cache canonical request bodies: every spelling of one request, one form. */
import test from 'ava';
import {
  NotCanonicalisable,
  canonicalJson,
  canonicalRequest,
  hasDuplicateKeys,
} from '../../plugins/tenant-cache/canonical';

const canon = (s: string) => canonicalRequest(s).canonical;

test('key order, whitespace, escapes and number spellings do not matter', (t) => {
  const a = canon('{"model":"m","temperature":0,"messages":[{"role":"user","content":"hi"}]}');
  for (const v of [
    '{"messages":[{"content":"hi","role":"user"}],"model":"m","temperature":0}',
    '{ "model" : "m" ,\n"temperature": 0.0, "messages": [ {"role":"user","content":"\\u0068\\u0069"} ] }',
    '{"model":"\\u006d","temperature":-0,"messages":[{"role":"user","content":"hi"}]}',
    '{"model":"m","temperature":0e5,"stream":false,"n":1,"messages":[{"role":"user","content":"hi"}]}',
  ]) {
    t.is(canon(v), a, v);
  }
});

test('different values stay different: array order, case, n, stream, nested keys', (t) => {
  const base = canon(
    '{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}',
  );
  for (const v of [
    '{"model":"m","messages":[{"role":"user","content":"b"},{"role":"user","content":"a"}]}',
    '{"model":"M","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}',
    '{"model":"m","n":2,"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}',
    '{"model":"m","stream":true,"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}',
    '{"model":"m","messages":[{"role":"user","content":"a","name":"x"},{"role":"user","content":"b"}]}',
  ]) {
    t.not(canon(v), base, v);
  }
  // No Unicode normalisation: é precomposed and decomposed are different prompts.
  t.not(canon('{"model":"m","x":"\\u00e9"}'), canon('{"model":"m","x":"e\\u0301"}'));
});

test('duplicate keys at any depth, compared after unescaping, are refused', (t) => {
  t.true(hasDuplicateKeys('{"a":1,"a":2}'));
  t.true(hasDuplicateKeys('{"a":1,"\\u0061":2}'));
  t.true(hasDuplicateKeys('{"m":[{"x":{"k":1,"k":1}}]}'));
  t.false(hasDuplicateKeys('{"a":{"a":1},"b":[{"a":1},{"a":2}]}'));
  t.false(hasDuplicateKeys('{"a":"{\\"a\\":1,\\"a\\":2}"}'), 'keys inside strings are text');
  t.false(hasDuplicateKeys('{"a\\"":1,"a":2}'));
  const e = t.throws(() => canonicalRequest('{"temperature":0,"temperature":1}'), {
    instanceOf: NotCanonicalisable,
  });
  t.is(e?.reason, 'duplicate_keys');
});

test('not JSON, not an object, too deep', (t) => {
  t.is(
    t.throws(() => canonicalRequest('{'), { instanceOf: NotCanonicalisable })?.reason,
    'not_json',
  );
  t.is(
    t.throws(() => canonicalRequest('[1]'), { instanceOf: NotCanonicalisable })?.reason,
    'not_object',
  );
  const deep = `{"a":${'['.repeat(100)}${']'.repeat(100)}}`;
  t.is(
    t.throws(() => canonicalRequest(deep), { instanceOf: NotCanonicalisable })?.reason,
    'too_deep',
  );
});

test('a __proto__ key is data, kept in the canonical form', (t) => {
  const c = canon('{"model":"m","__proto__":{"x":1}}');
  t.is(c, '{"__proto__":{"x":1},"model":"m"}');
  t.not(c, canon('{"model":"m"}'));
  t.is(canonicalJson({ b: [1, 'x', null, true], a: 1.5 }), '{"a":1.5,"b":[1,"x",null,true]}');
});
