/**
 * Prices and costs. Costs are integers in nano-USD (1e-9 USD): a price per million tokens
 * in USD is `price_per_million × 1000` nano-USD per token,
 * exact for prices with up to three decimals, and Redis adds integers exactly.
 */
import type { ModelKind, ModelPrice, TokenMeterConfig } from './config';

export const NANO_USD_PER_USD = 1e9;

/** Prices at one prompt length, nano-USD per token (may be fractional). */
export interface FlatPrice {
  readonly prompt: number;
  readonly completion: number;
  readonly cachedPrompt: number;
}

export interface TokenPrice extends FlatPrice {
  /** Prices of the whole request when its prompt holds more than `abovePromptTokens`. */
  readonly longContext?: FlatPrice & { readonly abovePromptTokens: number };
}

function flat(p: Omit<ModelPrice, 'long_context' | 'kind'>): FlatPrice {
  return {
    prompt: p.prompt_per_million * 1000,
    completion: p.completion_per_million * 1000,
    cachedPrompt: (p.cached_prompt_per_million ?? p.prompt_per_million) * 1000,
  };
}

function toTokenPrice(p: ModelPrice): TokenPrice {
  const lc = p.long_context;
  return lc
    ? { ...flat(p), longContext: { ...flat(lc), abovePromptTokens: lc.above_prompt_tokens } }
    : flat(p);
}

/** The prices a request with `promptTokens` prompt tokens is billed at. */
export function atLength(price: TokenPrice, promptTokens: number): FlatPrice {
  const lc = price.longContext;
  return lc !== undefined && promptTokens > lc.abovePromptTokens ? lc : price;
}

/** The model's price, the default price when allowed, or undefined (refuse). */
export function priceOf(config: TokenMeterConfig, model: string): TokenPrice | undefined {
  if (Object.prototype.hasOwnProperty.call(config.prices, model)) {
    const p = config.prices[model];
    if (p) return toTokenPrice(p);
  }
  return config.unknown_model === 'default_price' ? toTokenPrice(config.default_price) : undefined;
}

/** The kind the price table declares for the model (the default price's for an unlisted one). */
export function kindOf(config: TokenMeterConfig, model: string): ModelKind | null {
  const own = Object.prototype.hasOwnProperty.call(config.prices, model)
    ? config.prices[model]
    : undefined;
  return (own ?? config.default_price).kind ?? null;
}

/** True when a model of `kind` serves the request (`embeddings`: the embeddings API). */
export function kindServes(kind: ModelKind | null, embeddings: boolean): boolean {
  return kind === null || (kind === 'embedding') === embeddings;
}

export interface UsageCounts {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly cachedTokens: number;
}

/** Cost of a usage, nano-USD, rounded up. */
export function costOf(tiered: TokenPrice, u: UsageCounts): number {
  const price = atLength(tiered, u.promptTokens);
  const cached = Math.min(u.cachedTokens, u.promptTokens);
  return Math.ceil(
    (u.promptTokens - cached) * price.prompt +
      cached * price.cachedPrompt +
      u.completionTokens * price.completion,
  );
}

export function nanoUsdToUsd(n: number): number {
  return n / NANO_USD_PER_USD;
}
