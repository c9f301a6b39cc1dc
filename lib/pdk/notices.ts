/**
 * What a plugin server has to tell the operator outside any request (Redis unreachable, a cache
 * disabled, a failed replay), in Kong's error log at `warn`.
 *
 * Kong 3.9 logs a plugin server's stdout and stderr at INFO (kong/runloop/plugin_servers/
 * process.lua `grab_logs`), and its default `log_level` is `notice`: a line written to stderr
 * never reaches the error log of a Kong with the default configuration. So each notice is
 * written to stderr (the harness, a Kong at `info`) and also kept here, and the next log phase of
 * ours (after its response has left: no request waits for it) hands what is kept to
 * `kong.log.warn` in one PDK call. At most `MAX_KEPT` are kept between two log phases; past that
 * they are counted, and the count is logged instead.
 */
import type { KongPdk } from './kong';

export const MAX_KEPT = 50;

const kept: string[] = [];
let dropped = 0;

/** Tells the operator: stderr now, Kong's error log at the next log phase. */
export function notify(message: string): void {
  process.stderr.write(`${message}\n`);
  if (kept.length < MAX_KEPT) kept.push(message);
  else dropped++;
}

/** True when a log phase has something to hand over. */
export function hasNotices(): boolean {
  return kept.length > 0 || dropped > 0;
}

/** Hands the kept notices to Kong's error log (one call); never throws. */
export async function flushNotices(kong: KongPdk): Promise<void> {
  if (!hasNotices()) return;
  const lines = kept.splice(0);
  if (dropped > 0) lines.push(`(${dropped} more notices, on the plugin server's stderr)`);
  dropped = 0;
  try {
    await kong.log.warn(lines.join('\n'));
  } catch {
    // The log is best effort; stderr has every line.
  }
}
