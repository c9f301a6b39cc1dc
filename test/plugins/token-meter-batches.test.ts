/**
 * The Batches API metered through the repo's whole kong.yml chain (issue 21), on either gateway:
 * a batch input file uploaded as a form is read line by line; the batch made of it is reserved
 * at creation (every line's prompt estimate and completion bound at the batch price, held past
 * the 24 h window); the finished batch settles it from the usage the provider reports, once.
 * Bad lines, a file the meter never read, a budget that does not cover the batch, a provider
 * that refuses it, a batch that fails validation and one without usage each end as they must:
 * a clear refusal before the provider, a release, or an estimated entry at the bound.
 */
import test from 'ava';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { chatLine, code, json, param, startBatchDoor, type BatchDoor } from '../helpers/batch-door';
import { Closers, eventually } from '../helpers/frontdoor';

const closers = new Closers();
let d: BatchDoor;
/** gpt-4o-mini in kong.yml: $0.15 / $0.60 per million, nano-USD per token, at half price. */
const BATCH_PRICE = { prompt: 150 * 0.5, completion: 600 * 0.5 };

test.before(async () => {
  d = await startBatchDoor(closers.add, 'scoped');
});
test.after.always(() => closers.closeAll());

test.serial(
  'a batch is reserved at creation from its input file, held past the window, and settled once from the usage of the finished batch',
  async (t) => {
    const lines = [chatLine(1), chatLine(2), chatLine(3, { max_tokens: 25, n: 2 })];
    const fileId = await d.uploaded('acme', lines);
    const before = new Set(await d.reservations('acme'));
    const made = await d.create('acme', fileId);
    t.is(made.res.status, 200, made.res.text);
    t.is(made.upstream, 1);
    t.is(made.res.headers['x-budget-state'], 'ok');
    const batchId = String(json(made).id);
    // The reservation: the completion bound of every line (40 + 40 + 25 × 2) and the prompt
    // estimate, held past the 24 h completion window (batches.reservation_ttl_seconds).
    const open = (await d.reservations('acme')).filter((r) => !before.has(r));
    t.is(open.length, 1, 'one reservation for the batch');
    const rid = open[0] as string;
    const [tokens, cost] = String(await d.redis.hGet(d.budgetKey('acme'), `r:${rid}`))
      .split(' ')
      .map(Number) as [number, number];
    const prompt = tokens - 130;
    t.true(prompt > 30 && prompt < 200, `the prompt estimate of three short questions: ${prompt}`);
    t.is(cost, Math.ceil(prompt * BATCH_PRICE.prompt) + 130 * BATCH_PRICE.completion);
    const expiry = Number(await d.redis.zScore(d.reservationsKey('acme'), rid));
    t.true(expiry - Date.now() > 24 * 3600_000, 'held past the 24 h completion window');
    t.deepEqual(await d.ledger('acme').then((l) => l.filter((e) => e.rid === rid)), []);

    // The finished batch: settled from its usage, at the batch price, exactly once.
    await d.opened('acme', batchId);
    const read = await d.call('acme', 'GET', `/v1/batches/${batchId}`);
    t.is(read.res.status, 200, read.res.text);
    const batch = json(read);
    t.is(batch.status, 'completed');
    const usage = batch.usage as { input_tokens: number; output_tokens: number };
    t.true(usage.output_tokens > 0 && usage.output_tokens <= 130);
    const entry = await eventually(async () => {
      const e = (await d.ledger('acme')).find((x) => x.batch_id === batchId);
      return e;
    }, 10_000);
    t.is(entry.rid, rid, "the creation's request id settles the reservation");
    t.is(Number(entry.prompt), usage.input_tokens);
    t.is(Number(entry.completion), usage.output_tokens);
    t.is(
      Number(entry.cost_nusd),
      Math.ceil(
        usage.input_tokens * BATCH_PRICE.prompt + usage.output_tokens * BATCH_PRICE.completion,
      ),
    );
    t.is(entry.estimated, '0');
    t.is(entry.model, 'gpt-4o-mini');
    t.false((await d.reservations('acme')).includes(rid), 'the reservation is gone');
    t.is(await d.redis.exists(d.keys.batchOpen(parseTenantId('acme'), batchId)), 0);
    const again = await d.call('acme', 'GET', `/v1/batches/${batchId}`);
    t.is(again.res.status, 200);
    await new Promise((r) => setTimeout(r, 500));
    t.is((await d.ledger('acme')).filter((x) => x.batch_id === batchId).length, 1, 'billed once');
  },
);

test.serial(
  'a batch line the meter cannot bound, price or allow is refused at upload, naming the line',
  async (t) => {
    const unbounded = await d.upload('acme', [chatLine(1), chatLine(2, {})]);
    t.is(unbounded.res.status, 400, unbounded.res.text);
    t.is(code(unbounded), 'batch_line_unbounded');
    t.is(param(unbounded), 'line 2: body.max_tokens');
    t.is(unbounded.upstream, 0);
    const unpriced = await d.upload('acme', [
      { ...chatLine(1), body: { model: 'gpt-unpriced', max_tokens: 5, messages: [] } },
    ]);
    t.is(unpriced.res.status, 400, unpriced.res.text);
    t.is(code(unpriced), 'model_not_priced');
    t.is(unpriced.upstream, 0);
    const huge = await d.upload('acme', [
      '{"custom_id":"h","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","max_tokens":1e400,"messages":[]}}',
    ]);
    t.is(huge.res.status, 400, huge.res.text);
    t.is(code(huge), 'invalid_max_tokens');
    t.is(huge.upstream, 0);
    const notJson = await d.upload('acme', [chatLine(1), 'not json']);
    t.is(code(notJson), 'invalid_batch_line');
    t.is(param(notJson), 'line 2');
    // A file for another purpose is not read as batch input, and passes.
    const other = await d.upload('acme', ['anything'], 'user_data');
    t.is(other.res.status, 200, other.res.text);
  },
);

test.serial(
  'a batch of a file the meter never read, or one the budget does not cover, is refused before the provider',
  async (t) => {
    // The mock's JSON upload (not OpenAI's form): the meter cannot read it as batch input.
    const file = await d.call('acme', 'POST', '/v1/files', {
      purpose: 'batch',
      content: JSON.stringify(chatLine(1)),
    });
    t.is(file.res.status, 200, file.res.text);
    const fileId = String(json(file).id);
    await eventually(async () => {
      const r = await d.call('acme', 'GET', `/v1/files/${fileId}`);
      return r.res.status === 200 ? true : undefined;
    }, 10_000);
    const unread = await d.create('acme', fileId);
    t.is(unread.res.status, 400, unread.res.text);
    t.is(code(unread), 'batch_input_unmetered');
    t.is(param(unread), 'input_file_id');
    t.is(unread.upstream, 0);
    // globex (free: 200,000 tokens a month): 8 lines × 30,000 completion tokens do not fit.
    const big = await d.uploaded(
      'globex',
      Array.from({ length: 8 }, (_, i) => chatLine(i, { max_tokens: 30_000 })),
    );
    const refused = await d.create('globex', big);
    t.is(refused.res.status, 429, refused.res.text);
    t.is(code(refused), 'budget_exhausted');
    t.is(refused.upstream, 0);
    const wrong = await d.call('globex', 'POST', '/v1/batches', {
      input_file_id: big,
      endpoint: '/v1/embeddings',
      completion_window: '24h',
    });
    t.is(wrong.res.status, 400, wrong.res.text);
    t.is(code(wrong), 'batch_endpoint_mismatch');
  },
);

test.serial(
  'a batch the provider refuses is released; one that fails validation is released when read; one without usage is billed at its bound, estimated',
  async (t) => {
    const fileId = await d.uploaded('acme', [chatLine(1), chatLine(2)]);
    const before = new Set(await d.reservations('acme'));
    d.door.upstream.configure({
      failure: { mode: 'status', status: 500, count: 1, pathPrefix: '/v1/batches' },
    });
    const failed = await d.create('acme', fileId);
    t.is(failed.res.status, 500, failed.res.text);
    await eventually(async () => {
      const open = (await d.reservations('acme')).filter((r) => !before.has(r));
      return open.length === 0 ? true : undefined;
    }, 10_000);

    const invalid = await d.create('acme', fileId, { mock_status: 'failed' });
    t.is(invalid.res.status, 200, invalid.res.text);
    const invalidId = String(json(invalid).id);
    const rid = await eventually(async () => {
      const open = (await d.reservations('acme')).filter((r) => !before.has(r));
      return open[0];
    }, 10_000);
    await d.opened('acme', invalidId);
    const read = await d.call('acme', 'GET', `/v1/batches/${invalidId}`);
    t.is(json(read).status, 'failed');
    await eventually(
      async () => ((await d.reservations('acme')).includes(rid) ? undefined : true),
      10_000,
    );
    t.deepEqual(
      (await d.ledger('acme')).filter((e) => e.rid === rid),
      [],
      'nothing billed',
    );

    const silent = await d.create('acme', fileId, { mock_usage: 'none' });
    t.is(silent.res.status, 200, silent.res.text);
    const silentId = String(json(silent).id);
    await d.opened('acme', silentId);
    const done = await d.call('acme', 'GET', `/v1/batches/${silentId}`);
    t.is(json(done).status, 'completed');
    t.is(json(done).usage, undefined);
    const entry = await eventually(
      async () => (await d.ledger('acme')).find((x) => x.batch_id === silentId),
      10_000,
    );
    t.is(entry.estimated, '1');
    t.is(entry.estimate_basis, 'prompt=tokenizer;completion=bound');
    t.is(Number(entry.completion), 80, 'the bound of both lines');
  },
);

test.serial(
  'an upload past batches.max_input_bytes passes unread, whatever its framing (no 500), and a batch of it is refused',
  async (t) => {
    const closers2 = new Closers();
    t.teardown(() => closers2.closeAll());
    const small = await startBatchDoor(closers2.add, 'scoped', {
      batches: { max_input_bytes: 1024 },
    });
    // ~11 KB: past max_input_bytes, and past nginx's client body buffer (8 KiB), so Kong keeps
    // it in a file, where get_raw_body(max) cannot answer it. The body may already be in the
    // request's scope (a read fetched ahead): measured, it is still not taken.
    const lines = Array.from({ length: 60 }, (_, i) => chatLine(i));
    const big = await small.upload('acme', lines);
    t.is(big.res.status, 200, big.res.text);
    const fileId = String(json(big).id);
    await eventually(async () => {
      const r = await small.call('acme', 'GET', `/v1/files/${fileId}`);
      return r.res.status === 200 ? true : undefined;
    }, 10_000);
    const batch = await small.create('acme', fileId);
    t.is(batch.res.status, 400, batch.res.text);
    t.is(code(batch), 'batch_input_unmetered');
    t.is(batch.upstream, 0);
    // The same file sent chunked (no Content-Length): read whole, measured, passed unread.
    const boundary = 'chunkedBoundary1';
    const form = [
      `--${boundary}`,
      'Content-Disposition: form-data; name="purpose"',
      '',
      'batch',
      `--${boundary}`,
      'Content-Disposition: form-data; name="file"; filename="input.jsonl"',
      '',
      lines.map((l) => JSON.stringify(l)).join('\n'),
      `--${boundary}--`,
      '',
    ].join('\r\n');
    const chunked = await small.call('acme', 'POST', '/v1/files', form, {
      'content-type': `multipart/form-data; boundary=${boundary}`,
      'transfer-encoding': 'chunked',
    });
    t.is(chunked.res.status, 200, chunked.res.text);
    // A small file is still read and checked on the same door (control).
    const bad = await small.upload('acme', [chatLine(1, {})]);
    t.is(code(bad), 'batch_line_unbounded');
  },
);
