/**
 * token-meter's batch records (plugins/token-meter/batch/store.ts), tenant against tenant, on
 * either gateway, through the repo's kong.yml chain. `store: on` (the operator vouches that
 * each tenant's provider key is its own), so tenant-auth does not scope the ids and only the
 * meter's own keys stand between the tenants: globex presents acme's real file and batch ids.
 *
 * - globex cannot reserve a batch from acme's input file (what the meter read in it is under
 *   acme's key): refused before the provider; acme's own batch of it is reserved (control).
 * - globex reading acme's finished batch settles nothing: acme's reservation stays open,
 *   nothing lands in either ledger; acme's own read then settles it to acme (control).
 */
import test from 'ava';
import { chatLine, code, json, startBatchDoor, type BatchDoor } from '../helpers/batch-door';
import { Closers, eventually } from '../helpers/frontdoor';

const closers = new Closers();
let d: BatchDoor;

test.before(async () => {
  d = await startBatchDoor(closers.add, 'on');
});
test.after.always(() => closers.closeAll());

test.serial('B cannot make a metered batch of A’s input file', async (t) => {
  const fileId = await d.uploaded('acme', [chatLine(1), chatLine(2)]);
  const stolen = await d.create('globex', fileId);
  t.is(stolen.res.status, 400, stolen.res.text);
  t.is(code(stolen), 'batch_input_unmetered');
  t.is(stolen.upstream, 0, 'nothing reached the provider');
  t.deepEqual(await d.reservations('globex'), [], 'nothing reserved for globex');
  const own = await d.create('acme', fileId);
  t.is(own.res.status, 200, own.res.text);
  t.is(own.upstream, 1);
});

test.serial(
  'B reading A’s finished batch settles nothing; A’s own read settles it to A',
  async (t) => {
    const fileId = await d.uploaded('acme', [chatLine(3), chatLine(4)]);
    const before = new Set(await d.reservations('acme'));
    const made = await d.create('acme', fileId);
    t.is(made.res.status, 200, made.res.text);
    const batchId = String(json(made).id);
    await d.opened('acme', batchId);
    const [rid] = (await d.reservations('acme')).filter((r) => !before.has(r));
    t.truthy(rid);
    const globexLedger = (await d.ledger('globex')).length;

    // store: on forwards globex's read (the operator's choice); the provider finishes the batch.
    const peek = await d.call('globex', 'GET', `/v1/batches/${batchId}`);
    t.is(peek.res.status, 200, peek.res.text);
    t.is(json(peek).status, 'completed');
    await new Promise((r) => setTimeout(r, 1000));
    t.true((await d.reservations('acme')).includes(rid as string), 'acme’s reservation is open');
    t.is((await d.ledger('globex')).length, globexLedger, 'nothing billed to globex');
    t.deepEqual(
      (await d.ledger('acme')).filter((e) => e.batch_id === batchId),
      [],
      'nothing settled for acme by globex’s read',
    );

    const own = await d.call('acme', 'GET', `/v1/batches/${batchId}`);
    t.is(own.res.status, 200, own.res.text);
    const entry = await eventually(
      async () => (await d.ledger('acme')).find((e) => e.batch_id === batchId),
      10_000,
    );
    t.is(entry.rid, rid);
    t.is(entry.estimated, '0');
  },
);
