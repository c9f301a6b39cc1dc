/**
 * An ExpiryBilling for tests that call reserveBudget directly: what each candidate would be
 * billed as if its log phase never ran (token-meter's expiry sweep).
 */
import type { ExpiryBilling } from '../../plugins/token-meter/budget';

export function expiryBilling(
  candidates: number,
  o: {
    model?: string;
    promptTokens?: number;
    perUnit?: number;
    prompt?: number;
    completion?: number;
  } = {},
): ExpiryBilling {
  return {
    modelAsked: o.model ?? 'test-model',
    promptTokens: o.promptTokens ?? 0,
    completionPerUnit: o.perUnit ?? 1,
    stream: false,
    candidates: Array.from({ length: candidates }, () => ({
      model: o.model ?? 'test-model',
      downgrade: 'none' as const,
      price: { prompt: o.prompt ?? 0, completion: o.completion ?? 0, cachedPrompt: 0 },
    })),
  };
}
