import test from 'ava';
import {
  decodeContextHeader,
  escapeChunkText,
  newFenceMarker,
  renderContextHeader,
  renderSystemMessage,
} from '../../plugins/retrieval-injector/context';
import {
  extractQuery,
  insertSystemMessage,
  mergeSystemMessage,
  parseChatBody,
} from '../../plugins/retrieval-injector/chat';
import { DEFAULT_TEMPLATE } from '../../plugins/retrieval-injector/schema';
import { parseTenantId } from '../../lib/tenant/tenant-id';

const ns = parseTenantId('acme');
const chunk = (text: string, source = 'doc.md', score = 0.5) => ({ text, source, score, index: 0 });

test('escaping leaves no markup or fence characters', (t) => {
  t.is(escapeChunkText('a <b> & </system> >>>'), 'a &lt;b&gt; &amp; &lt;/system&gt; &gt;&gt;&gt;');
});

test('fence markers are random per call', (t) => {
  t.regex(newFenceMarker(), /^KNOWLEDGE-[0-9a-f]{16}$/);
  t.not(newFenceMarker(), newFenceMarker());
});

test('the system message fences each chunk with source and score; chunk placeholders stay literal', (t) => {
  const msg = renderSystemMessage(
    DEFAULT_TEMPLATE,
    ns,
    [chunk('first {{namespace}} {{chunks}}', 'a"b.md', 0.91234), chunk('second', 'c.md', 0.3)],
    'KNOWLEDGE-00ff',
  );
  t.true(msg.includes('knowledge base of acme'));
  t.true(
    msg.includes(
      '<<<KNOWLEDGE-00ff 1 source="a&quot;b.md" score="0.912">>>\nfirst {{namespace}} {{chunks}}\n<<<END KNOWLEDGE-00ff 1>>>',
    ),
  );
  t.true(
    msg.includes(
      '<<<KNOWLEDGE-00ff 2 source="c.md" score="0.300">>>\nsecond\n<<<END KNOWLEDGE-00ff 2>>>',
    ),
  );
});

test('the context header is base64url JSON within the bound, best chunks kept', (t) => {
  const chunks = [chunk('x'.repeat(300), 'one'), chunk('y'.repeat(300), 'two')];
  const full = renderContextHeader(ns, chunks, 10_000);
  t.deepEqual(decodeContextHeader(full ?? ''), {
    v: 1,
    namespace: 'acme',
    chunks: [
      { source: 'one', score: 0.5, text: 'x'.repeat(300) },
      { source: 'two', score: 0.5, text: 'y'.repeat(300) },
    ],
    omitted: 0,
  });
  const bounded = renderContextHeader(ns, chunks, 600) ?? '';
  t.true(bounded.length <= 600);
  const decoded = decodeContextHeader(bounded);
  t.is(decoded.chunks.length, 1);
  t.is(decoded.chunks[0]?.source, 'one');
  t.is(decoded.omitted, 1);
  t.is(renderContextHeader(ns, chunks, 10), null);
});

test('the query is the last user message, text parts joined, its end kept when too long', (t) => {
  const body = parseChatBody(
    Buffer.from(
      JSON.stringify({
        messages: [
          { role: 'user', content: 'first question' },
          { role: 'assistant', content: 'answer' },
          {
            role: 'user',
            content: [
              { type: 'text', text: 'second' },
              { type: 'image_url' },
              { type: 'text', text: 'question' },
            ],
          },
        ],
      }),
    ),
  );
  if (!body) return t.fail('parsed');
  t.is(extractQuery(body, 'last_user', 100), 'second\nquestion');
  t.is(extractQuery(body, 'all_user', 100), 'first question\nsecond\nquestion');
  t.is(extractQuery(body, 'last_user', 8), 'question');
});

test('bodies that are not chat objects are left alone', (t) => {
  t.is(parseChatBody(Buffer.from('')), null);
  t.is(parseChatBody(Buffer.from('not json')), null);
  t.is(parseChatBody(Buffer.from('[1]')), null);
  t.is(parseChatBody(Buffer.from('{"input":"x"}')), null);
});

test('the context message goes after the leading system and developer messages', (t) => {
  const body = {
    messages: [
      { role: 'system', content: 'persona' },
      { role: 'developer', content: 'rules' },
      { role: 'user', content: 'q' },
      { role: 'system', content: 'late system' },
    ],
  };
  const out = insertSystemMessage(body, 'CTX');
  t.deepEqual(
    out.messages.map((m) => m.content),
    ['persona', 'rules', 'CTX', 'q', 'late system'],
  );
  t.is(body.messages.length, 4, 'the input is not mutated');
});

test('merged: the leading system messages and the context become one system message', (t) => {
  const body = parseChatBody(
    Buffer.from(
      JSON.stringify({
        model: 'm',
        messages: [
          { role: 'system', content: 'persona' },
          { role: 'developer', content: [{ type: 'text', text: 'rules' }] },
          { role: 'user', content: 'q' },
          { role: 'system', content: 'late system' },
        ],
      }),
    ),
  );
  if (!body) return t.fail('body not parsed');
  const out = mergeSystemMessage(body, 'CTX');
  t.deepEqual(out.messages, [
    { role: 'system', content: 'persona\n\nrules\n\nCTX' },
    { role: 'user', content: 'q' },
    { role: 'system', content: 'late system' },
  ]);
  t.is(body.messages.length, 4, 'the input is not mutated');
  // No leading system message: the context becomes the first one.
  const bare = parseChatBody(
    Buffer.from(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'q' }] })),
  );
  if (!bare) return t.fail('body not parsed');
  t.deepEqual(mergeSystemMessage(bare, 'CTX').messages[0], { role: 'system', content: 'CTX' });
  // A leading message that is not text (an image part) is left alone: inserted after it.
  const image = parseChatBody(
    Buffer.from(
      JSON.stringify({
        model: 'm',
        messages: [
          { role: 'system', content: [{ type: 'image_url', image_url: { url: 'x' } }] },
          { role: 'user', content: 'q' },
        ],
      }),
    ),
  );
  if (!image) return t.fail('body not parsed');
  t.is(mergeSystemMessage(image, 'CTX').messages.length, 3);
});
