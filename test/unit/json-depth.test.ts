/**
 * How deep a request's JSON may nest (lib/request/json-depth.ts): measured without recursion,
 * so that a hostile body of any depth is refused instead of overflowing a stack.
 */
import test from 'ava';
import {
  MAX_JSON_DEPTH,
  nestsDeeperThan,
  parseJsonOrUndefined,
} from '../../lib/request/json-depth';

const arrays = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
const objects = (depth: number) => `${'{"a":'.repeat(depth - 1)}{}${'}'.repeat(depth - 1)}`;

test('the top level is 1; scalars nest nothing', (t) => {
  t.false(nestsDeeperThan(1, 0));
  t.false(nestsDeeperThan(null, 0));
  t.false(nestsDeeperThan('x', 0));
  t.false(nestsDeeperThan({}, 1));
  t.true(nestsDeeperThan({}, 0));
  t.false(nestsDeeperThan({ a: [1, { b: 'x' }] }, 3));
  t.true(nestsDeeperThan({ a: [1, { b: [] }] }, 3));
});

test('exactly the limit passes, one level more does not: arrays, objects, and both mixed', (t) => {
  for (const make of [arrays, objects]) {
    t.false(nestsDeeperThan(JSON.parse(make(MAX_JSON_DEPTH))));
    t.true(nestsDeeperThan(JSON.parse(make(MAX_JSON_DEPTH + 1))));
  }
  // The deep branch is found beside shallow ones, wherever it is.
  const wide = { messages: [{ role: 'user', content: 'hi' }], tools: JSON.parse(arrays(200)) };
  t.true(nestsDeeperThan(wide));
});

test('a body deeper than any stack is measured, not overflowed', (t) => {
  const text = `{"model":"m","messages":${arrays(100_000)}}`;
  const value = JSON.parse(text) as unknown;
  t.throws(() => JSON.stringify(value), { instanceOf: RangeError });
  t.true(nestsDeeperThan(value));
  t.is(parseJsonOrUndefined(text), undefined);
});

test('parseJsonOrUndefined: JSON within the limit, else undefined', (t) => {
  t.deepEqual(parseJsonOrUndefined('{"a":[1,2]}'), { a: [1, 2] });
  t.is(parseJsonOrUndefined('{"a":'), undefined);
  t.is(parseJsonOrUndefined(arrays(MAX_JSON_DEPTH + 1)), undefined);
  t.deepEqual(parseJsonOrUndefined(arrays(3)), [[[]]]);
});
