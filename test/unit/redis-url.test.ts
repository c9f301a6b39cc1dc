/**
 * lib/redis/client.ts's URL forms: a plain redis:// URL stays a standalone client, unchanged;
 * `?cluster=1` makes a Redis Cluster client with its seed nodes; mistakes are refused with
 * the URL (password redacted) in the message, never guessed.
 */
import test from 'ava';
import { InvalidRedisUrlError, parseRedisUrl } from '../../lib/redis/client';

test('a URL without cluster= is a standalone server, passed on as written', (t) => {
  for (const url of [
    'redis://127.0.0.1:6379',
    'redis://user:secret@redis.internal:6380/2',
    'rediss://redis.example.com',
  ]) {
    t.deepEqual(parseRedisUrl(url), { kind: 'standalone', url });
  }
  t.deepEqual(parseRedisUrl('redis://127.0.0.1:6379?cluster=0'), {
    kind: 'standalone',
    url: 'redis://127.0.0.1:6379',
  });
});

test('cluster=1: the host and the nodes list are the seeds; credentials and TLS for all', (t) => {
  t.deepEqual(parseRedisUrl('redis://127.0.0.1:7100?cluster=1'), {
    kind: 'cluster',
    nodes: [{ host: '127.0.0.1', port: 7100 }],
    tls: false,
  });
  t.deepEqual(
    parseRedisUrl(
      'rediss://gw:p%40ss@10.0.0.1:7000/?cluster=yes&nodes=10.0.0.2:7000,%5B::1%5D:7001',
    ),
    {
      kind: 'cluster',
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7000 },
        { host: '::1', port: 7001 },
      ],
      username: 'gw',
      password: 'p@ss',
      tls: true,
    },
  );
  t.like(parseRedisUrl('redis://redis-0.redis:6379/0?cluster=true&nodes=redis-1.redis:6379'), {
    kind: 'cluster',
    nodes: [
      { host: 'redis-0.redis', port: 6379 },
      { host: 'redis-1.redis', port: 6379 },
    ],
  });
});

test('mistakes are refused, the password kept out of the message', (t) => {
  const refused = (url: string, pattern: RegExp): void => {
    const err = t.throws(() => parseRedisUrl(url), { instanceOf: InvalidRedisUrlError });
    t.regex(err?.message ?? '', pattern, url);
    t.notRegex(err?.message ?? '', /hunter2/, url);
  };
  refused('redis://:hunter2@h:7000?cluster=maybe', /cluster=maybe/);
  refused('redis://:hunter2@h:7000?cluster=1&node=h2:7000', /unknown parameter node/);
  refused('redis://:hunter2@h:7000/3?cluster=1', /only database 0/);
  refused('redis://:hunter2@h:7000?cluster=1&nodes=h2', /host:port/);
  refused('redis://:hunter2@h:7000?cluster=1&nodes=u@h2:7000', /host:port/);
  refused('redis://:hunter2@h:7000?cluster=0&nodes=h2:7000', /needs cluster=1/);
  refused('not a url', /not a URL/);
});
