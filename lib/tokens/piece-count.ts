/**
 * Counting ASCII text without handing every piece to the WebAssembly tokenizer.
 *
 * tiktoken (tokenize.ts) first splits a text into pieces with its pattern (a backtracking regex
 * in WebAssembly, most of its time), then looks each piece up in the vocabulary: a piece that
 * is a token whole counts 1, any other is merged pair by pair (BPE). Most pieces of a prompt are
 * whole tokens (" the", " request", "ing", ",").
 *
 * So for ASCII text this module splits with the same pattern written for V8's regex engine, and
 * counts a piece that is a whole token of the vocabulary as 1 without leaving JavaScript. A run
 * of other pieces (with the few whole tokens between them) is counted by tiktoken in one call,
 * on exactly those characters. The count is tiktoken's own: splitting a text at piece boundaries
 * and counting the parts gives the sum of their counts, because the pattern's matches never
 * cross a boundary it made (test/unit/tokens-piece-count.test.ts checks it against tiktoken on
 * random text built from the characters the pattern treats specially, and on prose).
 *
 * - ASCII only: there the pattern's classes are plain (`\p{L}` = [A-Za-z], `\p{N}` = [0-9],
 *   Unicode's White_Space = JS's `\s`), so V8 and tiktoken's regex split alike. Text with any
 *   other character goes to tiktoken whole, as before.
 * - The vocabulary's whole-token ASCII pieces (about 129,000 of o200k_base, 95,000 of
 *   cl100k_base) are kept as 64-bit fingerprints in an open-addressing table in typed arrays,
 *   not as JS strings: the garbage collector never traces them (the reason tokenize.ts uses
 *   WebAssembly at all). The fingerprint is two 32-bit FNV-1a hashes seeded at random per
 *   process, so no text can be crafted to collide; a chance collision (about 1 in 10^13 per
 *   piece) would count one piece as 1 token in an estimate.
 * - Built from the encoding's own vocabulary (`token_byte_values`) when the encoding is: about
 *   0.1-0.2 s once per process, 2 MiB per encoding.
 * - The table holds the vocabulary only, nothing learnt from requests: no tenant's text is kept,
 *   and one tenant's prompts cannot change another's counts or timings.
 */
import { randomInt } from 'node:crypto';
import type { Tiktoken } from 'tiktoken';

export type PieceEncoding = 'o200k_base' | 'cl100k_base';

// tiktoken's patterns (the strings in its WebAssembly), restricted to ASCII. `(?i:'s|…)`
// matches either case of each letter; in ASCII that is the classes below.
const CL100K_CONTRACTION = "'(?:[sStTmMdD]|[rR][eE]|[vV][eE]|[lL][lL])";
const O200K_CONTRACTION = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?";
const PATTERNS: Record<PieceEncoding, string> = {
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  cl100k_base:
    `${CL100K_CONTRACTION}|[^\\r\\nA-Za-z0-9]?[A-Za-z]+|[0-9]{1,3}| ?[^\\sA-Za-z0-9]+[\\r\\n]*` +
    '|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+',
  // [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|…)?
  // |[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|…)?
  // |\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
  o200k_base:
    `[^\\r\\nA-Za-z0-9]?[A-Z]*[a-z]+${O200K_CONTRACTION}` +
    `|[^\\r\\nA-Za-z0-9]?[A-Z]+[a-z]*${O200K_CONTRACTION}` +
    '|[0-9]{1,3}| ?[^\\sA-Za-z0-9]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+',
};

const NON_ASCII = /[^\x00-\x7f]/;

/** A run of whole tokens this long after the last other piece ends tiktoken's span. */
const HITS_TO_CLOSE_SPAN = 4;

/** How pieces were counted, for tests and the curious (not per tenant: no label). */
export const pieceCountStats = { fromTable: 0, spans: 0, wholeTexts: 0 };

/** Two FNV-1a 32-bit hashes of a string's char codes, from the process's seeds. */
function fingerprint(s: string, seedA: number, seedB: number): [number, number] {
  let a = seedA;
  let b = seedB;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x01000193);
  }
  a >>>= 0;
  b >>>= 0;
  // (0, 0) marks an empty slot.
  return a === 0 && b === 0 ? [0, 1] : [a, b];
}

export class PieceCounter {
  private readonly pattern: RegExp;
  private readonly slots: Uint32Array;
  private readonly mask: number;
  private readonly seedA = randomInt(1, 0xffffffff);
  private readonly seedB = randomInt(1, 0xffffffff);
  /** Whole-token ASCII pieces in the table. */
  readonly size: number;

  constructor(
    private readonly encoding: Tiktoken,
    name: PieceEncoding,
  ) {
    this.pattern = new RegExp(PATTERNS[name], 'y');
    const whole: string[] = [];
    for (const bytes of encoding.token_byte_values()) {
      if (bytes.some((x) => x >= 0x80)) continue;
      const piece = String.fromCharCode(...bytes);
      if (this.wholePiece(piece)) whole.push(piece);
    }
    let capacity = 1;
    while (capacity < whole.length * 2) capacity *= 2;
    this.mask = capacity - 1;
    this.slots = new Uint32Array(capacity * 2);
    for (const piece of whole) this.insert(piece);
    this.size = whole.length;
  }

  /** True when the pattern reads `piece` as one piece (a token that is not is never looked up). */
  private wholePiece(piece: string): boolean {
    this.pattern.lastIndex = 0;
    const m = this.pattern.exec(piece);
    return m !== null && m[0].length === piece.length;
  }

  private insert(piece: string): void {
    const [a, b] = fingerprint(piece, this.seedA, this.seedB);
    let i = a & this.mask;
    for (;;) {
      const at = i * 2;
      const sa = this.slots[at]!;
      const sb = this.slots[at + 1]!;
      if (sa === 0 && sb === 0) {
        this.slots[at] = a;
        this.slots[at + 1] = b;
        return;
      }
      if (sa === a && sb === b) return;
      i = (i + 1) & this.mask;
    }
  }

  /** The piece is a whole token of the vocabulary. */
  isToken(piece: string): boolean {
    const [a, b] = fingerprint(piece, this.seedA, this.seedB);
    let i = a & this.mask;
    for (;;) {
      const at = i * 2;
      const sa = this.slots[at]!;
      const sb = this.slots[at + 1]!;
      if (sa === a && sb === b) return true;
      if (sa === 0 && sb === 0) return false;
      i = (i + 1) & this.mask;
    }
  }

  /** tiktoken's `encode_ordinary(text).length`, computed as described above. */
  count(text: string): number {
    if (text.length === 0) return 0;
    if (NON_ASCII.test(text)) return this.whole(text);
    const re = this.pattern;
    re.lastIndex = 0;
    let n = 0;
    let pos = 0;
    /** Where the open span starts (-1: none), and where its last other piece ends. */
    let spanFrom = -1;
    let spanTo = 0;
    /** Whole tokens since the span's last other piece, not yet counted. */
    let held = 0;
    let fromTable = 0;
    while (pos < text.length) {
      const m = re.exec(text);
      // Every character starts some alternative, so a gap cannot happen; if it ever did,
      // tiktoken counts the text.
      if (m === null) return this.whole(text);
      const end = pos + m[0].length;
      if (this.isToken(m[0])) {
        fromTable++;
        if (spanFrom < 0) n++;
        else if (++held === HITS_TO_CLOSE_SPAN) {
          n += this.span(text, spanFrom, spanTo) + held;
          spanFrom = -1;
          held = 0;
        }
      } else {
        if (spanFrom < 0) spanFrom = pos;
        spanTo = end;
        held = 0;
      }
      pos = end;
    }
    if (spanFrom >= 0) n += this.span(text, spanFrom, spanTo) + held;
    pieceCountStats.fromTable += fromTable;
    return n;
  }

  private span(text: string, from: number, to: number): number {
    pieceCountStats.spans++;
    return this.encoding.encode_ordinary(text.slice(from, to)).length;
  }

  private whole(text: string): number {
    pieceCountStats.wholeTexts++;
    return this.encoding.encode_ordinary(text).length;
  }
}
