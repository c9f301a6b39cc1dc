/**
 * Sorting Redis failures into the two kinds a plugin's failure policy cares about.
 *
 * "Unavailable" means Redis could not answer in time (down, reconnecting, slow): the plugin
 * applies its configured fallback. Anything else (a script error, a wrong type) is a bug or a
 * data problem and must not be papered over by the fallback.
 */
import {
  ClientClosedError,
  ClientOfflineError,
  ConnectionTimeoutError,
  SocketClosedUnexpectedlyError,
  TimeoutError,
} from 'redis';
import { RedisDeadlineError } from './client';

export function isRedisUnavailable(err: unknown): boolean {
  return (
    err instanceof RedisDeadlineError ||
    err instanceof TimeoutError ||
    err instanceof ClientOfflineError ||
    err instanceof ClientClosedError ||
    err instanceof ConnectionTimeoutError ||
    err instanceof SocketClosedUnexpectedlyError ||
    // node-redis rejects with a plain Error when commandsQueueMaxLength is reached.
    (err instanceof Error && err.message === 'The queue is full')
  );
}
