// Kong's `match` / `not_match` / `starts_with` validators use Lua patterns
// (kong/db/schema/init.lua 3.9.3: Schema.validators.match uses string.find(value, pattern)).
// This translates the common subset to a JavaScript RegExp; patterns outside it return
// undefined and are then not checked (reported by the caller).

const CLASSES: Record<string, string> = {
  a: 'A-Za-z',
  d: '0-9',
  l: 'a-z',
  s: '\\s',
  u: 'A-Z',
  w: 'A-Za-z0-9',
  x: '0-9A-Fa-f',
  p: '!-/:-@\\[-`{-~',
  c: '\\x00-\\x1f\\x7f',
};

function classFor(letter: string, inSet: boolean): string | undefined {
  const lower = letter.toLowerCase();
  const body = CLASSES[lower];
  if (body === undefined) return undefined;
  const negated = letter !== lower;
  if (inSet) return negated ? undefined : body;
  return negated ? `[^${body}]` : `[${body}]`;
}

function escapeChar(ch: string): string {
  return /[\\^$.*+?()[\]{}|/-]/.test(ch) ? `\\${ch}` : ch;
}

export function luaPatternToRegExp(pattern: string): RegExp | undefined {
  let out = '';
  let i = 0;
  while (i < pattern.length) {
    const ch = pattern[i] as string;
    if (ch === '%') {
      const next = pattern[i + 1];
      if (next === undefined) return undefined;
      if (/[a-zA-Z]/.test(next)) {
        const cls = classFor(next, false);
        if (cls === undefined) return undefined;
        out += cls;
      } else out += escapeChar(next);
      i += 2;
    } else if (ch === '[') {
      let j = i + 1;
      let set = '[';
      if (pattern[j] === '^') {
        set += '^';
        j++;
      }
      let closed = false;
      while (j < pattern.length) {
        const c = pattern[j] as string;
        if (c === ']' && set.length > 1 && set !== '[^') {
          closed = true;
          break;
        }
        if (c === '%') {
          const n = pattern[j + 1];
          if (n === undefined) return undefined;
          if (/[a-zA-Z]/.test(n)) {
            const cls = classFor(n, true);
            if (cls === undefined) return undefined;
            set += cls;
          } else set += `\\${n}`;
          j += 2;
        } else {
          set += c === '\\' || c === ']' || c === '[' ? `\\${c}` : c;
          j++;
        }
      }
      if (!closed) return undefined;
      out += `${set}]`;
      i = j + 1;
    } else if (ch === '-') {
      out += '*?'; // Lua's lazy repetition
      i++;
    } else if (ch === '^' && i === 0) {
      out += '^';
      i++;
    } else if (ch === '$' && i === pattern.length - 1) {
      out += '$';
      i++;
    } else if (ch === '*' || ch === '+' || ch === '?' || ch === '.') {
      out += ch;
      i++;
    } else if (ch === '(' || ch === ')') {
      out += ch;
      i++;
    } else {
      out += escapeChar(ch);
      i++;
    }
  }
  try {
    return new RegExp(out, 'u');
  } catch {
    return undefined;
  }
}
