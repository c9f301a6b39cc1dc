/**
 * What token-meter's access phase passes to its own log phase through `kong.ctx.shared`
 * (the two run as separate events; nothing per request may live on the instance).
 */
import type { Downgrade } from './budget';
import type { TokenPrice } from './pricing';
import { SHARED_KEYS, sharedJsonObject } from '../../lib/request/shared-keys';

export { PLUGIN_NAME } from './name';

export const METER_STATE_KEY = SHARED_KEYS.meterState.key;
/**
 * The meter state of a POST that spends no tokens (a file upload, a cancel): nothing reserved,
 * nothing to settle (`decodeMeterState` refuses it), but kong.yml's chain guard sees the meter ran.
 */
export const METER_STATE_NONE = 'none';

export interface MeterState {
  readonly v: 1;
  readonly requestId: string;
  readonly tenant: string;
  readonly period: string;
  readonly periodEndMs: number;
  readonly modelAsked: string;
  readonly modelServed: string;
  readonly downgrade: Downgrade;
  readonly stream: boolean;
  /** Prompt tokens counted by the tokenizer (without the injected-context headroom). */
  readonly promptTokens: number;
  /** The completion bound per choice the request was sent with. */
  readonly maxTokensPerChoice: number;
  readonly n: number;
  readonly price: TokenPrice;
  /** false: Redis was unavailable in access and the request went out unchecked (spool mode). */
  readonly reserved: boolean;
}

export function encodeMeterState(s: MeterState): string {
  return JSON.stringify(s);
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;

export function decodeMeterState(raw: unknown): MeterState | undefined {
  const s = sharedJsonObject(raw);
  if (!s) return undefined;
  const price = s.price as Record<string, unknown> | null | undefined;
  if (
    s.v !== 1 ||
    typeof s.requestId !== 'string' ||
    s.requestId === '' ||
    typeof s.tenant !== 'string' ||
    typeof s.period !== 'string' ||
    !isNum(s.periodEndMs) ||
    typeof s.modelAsked !== 'string' ||
    typeof s.modelServed !== 'string' ||
    (s.downgrade !== 'none' && s.downgrade !== 'fallback' && s.downgrade !== 'clamp') ||
    typeof s.stream !== 'boolean' ||
    !isNum(s.promptTokens) ||
    !isNum(s.maxTokensPerChoice) ||
    !isNum(s.n) ||
    typeof s.reserved !== 'boolean' ||
    !price ||
    !isNum(price.prompt) ||
    !isNum(price.completion) ||
    !isNum(price.cachedPrompt) ||
    !validLongContext(price.longContext)
  ) {
    return undefined;
  }
  return s as unknown as MeterState;
}

function validLongContext(lc: unknown): boolean {
  if (lc === undefined) return true;
  if (typeof lc !== 'object' || lc === null) return false;
  const l = lc as Record<string, unknown>;
  return (
    isNum(l.abovePromptTokens) && isNum(l.prompt) && isNum(l.completion) && isNum(l.cachedPrompt)
  );
}
