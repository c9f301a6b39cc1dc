/**
 * Every phase handler of our plugins runs inside `guardPhase`.
 *
 * Why: kong-js-pluginserver catches an exception thrown by a phase, logs it and ends the
 * phase normally (kong-pdk server.js, HandleEvent) — Kong then carries on and proxies the
 * request. For an isolation plugin that is failing open. So a GatewayError becomes its
 * OpenAI-style refusal, and any other error becomes a 500 refusal: the request goes nowhere.
 */
import { GatewayError, exitWithError, isGatewayError, kongRequestId } from '../http/errors';
import { asKongPdk, type KongPdk } from '../pdk/kong';
import { flushNotices, hasNotices } from '../pdk/notices';

export interface PhaseHooks {
  /** Called with the refusal before the response is sent (metrics). */
  onRefusal?(error: GatewayError): void;
  /**
   * The response has already left (the `log` phase): an error is logged, never answered
   * (kong.response.exit fails there, and its JS call would never settle).
   */
  afterResponse?: boolean;
}

export async function guardPhase(
  rawKong: unknown,
  plugin: string,
  phase: string,
  body: (kong: KongPdk) => Promise<void>,
  hooks: PhaseHooks = {},
): Promise<void> {
  const kong = asKongPdk(rawKong);
  try {
    await body(kong);
    // The plugin server's own notices (notices.ts), after the response has left.
    if (hooks.afterResponse && hasNotices()) await flushNotices(kong);
  } catch (e) {
    const refusal = isGatewayError(e)
      ? e
      : new GatewayError({
          status: 500,
          type: 'server_error',
          code: 'plugin_error',
          message: `${plugin} failed while handling the request; it was not forwarded`,
        });
    if (hooks.afterResponse) {
      const detail = e instanceof Error ? (e.stack ?? e.message) : String(e);
      void kong.log.err(`${plugin} ${phase}: ${detail}`);
      if (hasNotices()) await flushNotices(kong);
      return;
    }
    // The refusal goes out first: nothing after these lines may stand between an error and it.
    // Its body names the request (X-Kong-Request-Id's value); a read that fails leaves it out.
    exitWithError(kong, refusal.spec, await kongRequestId(kong));
    if (!isGatewayError(e)) {
      const detail = e instanceof Error ? (e.stack ?? e.message) : String(e);
      void kong.log.err(`${plugin} ${phase}: unexpected error: ${detail}`);
    }
    try {
      hooks.onRefusal?.(refusal);
    } catch {
      // metrics must never turn a refusal into something else
    }
  }
}
