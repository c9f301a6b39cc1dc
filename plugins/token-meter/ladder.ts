/**
 * The budget ladder as reservation candidates, tried in order by one Redis script:
 *   1. the model asked for, at the requested bound (only below the soft threshold when a
 *      downgrade is possible);
 *   2. the plan's fallback model, at the requested bound (when allowed and priced);
 *   3. the cheapest allowed model with max_tokens clamped to what the budget still covers
 *      (when allowed, not below `min_clamp_tokens`).
 * Nothing fits: the hard cap, a 429.
 */
import type { Downgrade, ReserveCandidate } from './budget';
import { atLength, type TokenPrice } from './pricing';

export interface LadderStep {
  readonly model: string;
  readonly downgrade: Downgrade;
  readonly price: TokenPrice;
  readonly candidate: ReserveCandidate;
}

export interface LadderInput {
  readonly askedModel: string;
  readonly askedPrice: TokenPrice;
  /** The plan's fallback model and its price, when a downgrade is allowed. */
  readonly fallback: { model: string; price: TokenPrice } | null;
  readonly allowClamp: boolean;
  readonly minClampTokens: number;
  readonly softThreshold: number;
  /** Prompt tokens, headroom for injected context included. */
  readonly promptTokens: number;
  readonly choices: number;
  /** Completion tokens per choice the request will be held to (0 for embeddings). */
  readonly maxTokensPerChoice: number;
}

function candidate(
  tiered: TokenPrice,
  i: LadderInput,
  minUnits: number,
  softRatio: number,
): ReserveCandidate {
  // Reserved at the tier the estimated prompt (with its headroom) falls in.
  const price = atLength(tiered, i.promptTokens);
  return {
    baseTokens: i.promptTokens,
    baseCost: Math.ceil(i.promptTokens * price.prompt),
    unitTokens: i.choices,
    unitCost: Math.ceil(i.choices * price.completion),
    minUnits,
    maxUnits: i.maxTokensPerChoice,
    softRatio,
  };
}

export function ladder(i: LadderInput): LadderStep[] {
  const full = i.maxTokensPerChoice;
  const steps: LadderStep[] = [
    {
      model: i.askedModel,
      downgrade: 'none',
      price: i.askedPrice,
      candidate: candidate(i.askedPrice, i, full, i.fallback ? i.softThreshold : 1),
    },
  ];
  if (i.fallback) {
    steps.push({
      model: i.fallback.model,
      downgrade: 'fallback',
      price: i.fallback.price,
      candidate: candidate(i.fallback.price, i, full, 1),
    });
  }
  const minClamp = Math.min(i.minClampTokens, full);
  if (i.allowClamp && full > 0 && minClamp < full) {
    const cheapest = i.fallback ?? { model: i.askedModel, price: i.askedPrice };
    steps.push({
      model: cheapest.model,
      downgrade: 'clamp',
      price: cheapest.price,
      candidate: candidate(cheapest.price, i, minClamp, 1),
    });
  }
  return steps;
}
