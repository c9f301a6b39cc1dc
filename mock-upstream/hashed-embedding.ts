/**
 * A feature-hashing embedder: NOT a semantic model. A text becomes the bag of its lowercased
 * words plus adjacent word pairs, each hashed (FNV-1a) to one of `dim` buckets with a hashed
 * sign, and the vector is scaled to unit length. Texts that share words therefore have a high
 * cosine similarity and unrelated texts are near-orthogonal; synonyms and paraphrases are not
 * recognised. It is deterministic across processes and machines, which is what tests of a
 * vector store or a semantic cache need.
 */

function fnv1a(s: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

const WORD_WEIGHT = 1;
// Pairs carry some word order ("dog bites man" vs "man bites dog") without letting it dominate.
const PAIR_WEIGHT = 0.5;

function features(text: string): Array<[string, number]> {
  const words = text
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter((w) => w.length > 0);
  // A text without words (punctuation, whitespace, '') still gets its own stable vector.
  if (words.length === 0) return [[`raw:${text}`, WORD_WEIGHT]];
  const out: Array<[string, number]> = words.map((w) => [`w:${w}`, WORD_WEIGHT]);
  for (let i = 1; i < words.length; i++) out.push([`p:${words[i - 1]} ${words[i]}`, PAIR_WEIGHT]);
  return out;
}

function hashedUnitVector(feats: ReadonlyArray<[string, number]>, dim: number): number[] {
  const v = new Array<number>(dim).fill(0);
  for (const [feature, weight] of feats) {
    const bucket = fnv1a(feature, 0) % dim;
    const sign = fnv1a(feature, 0x9e3779b9) & 1 ? 1 : -1;
    v[bucket] = (v[bucket] ?? 0) + sign * weight;
  }
  let norm = Math.hypot(...v);
  // Opposite signs can cancel to zero in tiny dimensions; fall back to one fixed bucket.
  if (norm === 0) {
    v[fnv1a(feats[0]?.[0] ?? '', 1) % dim] = 1;
    norm = 1;
  }
  return v.map((x) => x / norm);
}

/** Unit-norm vector of `dim` for a text. */
export function embedText(text: string, dim: number): number[] {
  return hashedUnitVector(features(text), dim);
}

/** Unit-norm vector of `dim` for a pre-tokenized input: the bag of its token ids. */
export function embedTokenIds(tokens: readonly number[], dim: number): number[] {
  const feats: Array<[string, number]> = tokens.map((t) => [`t:${t}`, WORD_WEIGHT]);
  return hashedUnitVector(feats.length > 0 ? feats : [['t:', WORD_WEIGHT]], dim);
}
