/**
 * Sorting Redis failures into the two kinds a plugin's failure policy cares about.
 *
 * "Unavailable" means Redis could not answer in time (down, reconnecting, slow, or a cluster
 * between two topologies): the plugin applies its configured fallback. Anything else (a
 * script error, a wrong type) is a bug or a data problem and must not be papered over by the
 * fallback.
 */
import {
  ClientClosedError,
  ClientOfflineError,
  ConnectionTimeoutError,
  ErrorReply,
  MaxCommandRedirectionsError,
  RootNodesUnavailableError,
  SocketClosedUnexpectedlyError,
  TimeoutError,
} from 'redis';
import { RedisDeadlineError } from './client';

/**
 * Server replies that mean "not now" rather than "wrong": a cluster without a master for the
 * slot (CLUSTERDOWN, while a failed master is not yet replaced), a multi-key call while the
 * slot's keys are half migrated (TRYAGAIN), a replica out of touch with its master
 * (MASTERDOWN), a node loading its data after a restart (LOADING).
 */
const TRANSIENT_REPLY = /^(CLUSTERDOWN|TRYAGAIN|MASTERDOWN|LOADING)\b/;

/** True for a reply that a later attempt may not get (see TRANSIENT_REPLY). */
export function isTransientReply(err: unknown): boolean {
  return err instanceof ErrorReply && TRANSIENT_REPLY.test(err.message);
}

/**
 * Socket errors node-redis hands to the commands in flight when a connection breaks (a
 * killed server resets it: `read ECONNRESET`), or to a connect attempt.
 */
const NETWORK_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

function isNetworkError(err: unknown): boolean {
  const code = err instanceof Error ? (err as NodeJS.ErrnoException).code : undefined;
  return typeof code === 'string' && NETWORK_ERROR_CODES.has(code);
}

export function isRedisUnavailable(err: unknown): boolean {
  return (
    isNetworkError(err) ||
    err instanceof RedisDeadlineError ||
    err instanceof TimeoutError ||
    err instanceof ClientOfflineError ||
    err instanceof ClientClosedError ||
    err instanceof ConnectionTimeoutError ||
    err instanceof SocketClosedUnexpectedlyError ||
    // Cluster: no seed node answered; a key redirected more often than the client follows.
    err instanceof RootNodesUnavailableError ||
    err instanceof MaxCommandRedirectionsError ||
    isTransientReply(err) ||
    // node-redis rejects with a plain Error when commandsQueueMaxLength is reached.
    (err instanceof Error && err.message === 'The queue is full')
  );
}
