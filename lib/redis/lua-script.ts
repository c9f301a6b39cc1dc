/**
 * Lua scripts kept as files, one operation each, named `<name>-<number of keys>.lua` and read
 * once per process, as BullMQ's `src/commands/*.lua` are; called by SHA1.
 *
 * Includes (BullMQ's `script-loader.ts`): a line `--- @include "<ref>"` is replaced by the
 * included file, so a clock read or a bucket refill is written once. `<ref>` is relative to
 * the including file (`.lua` added when missing), or `<includes>/<name>` for the shared
 * includes of lib/redis/scripts/includes, from any directory (a plugin's or a test fixture's
 * scripts). An include is inlined once per script, where it is first met (a later directive
 * for the same file, in another include, adds nothing); the same include twice in one file, an
 * include cycle or a missing file is an error when the script is loaded, not when Redis runs
 * it. An include defines functions that take their keys and arguments as parameters: only the
 * script itself reads KEYS and ARGV, so its header lists all of them. The SHA1 is of the
 * resolved text, the text EVAL sends.
 *
 * The call is EVALSHA; on NOSCRIPT (Redis restarted, SCRIPT FLUSH, a failover to a replica
 * that never saw the script) it falls back to EVAL with the source, which also puts the
 * script back in the server's cache, so the next call is an EVALSHA again. That is the
 * behaviour of node-redis's own `defineScript`, but node-redis binds scripts to a client at
 * construction; this module keeps scripts independent of the client factory, and checks the
 * key count against the file name on every call.
 *
 * On Redis Cluster the call goes to the master of the first key's slot (all of a script's keys
 * share one hash tag: test/unit/redis-key-slots.test.ts), each master keeps its own script
 * cache (a NOSCRIPT on one master is healed there by the same fallback), and a call that finds
 * its slot half migrated (TRYAGAIN: some of its keys moved, some not yet) is sent again after
 * a short pause, within the same deadline.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { withDeadline, type RedisClient } from './client';
import type { RedisKey } from './keys';

export interface LuaScript {
  /** File name without `.lua`, e.g. `tenant-admit-3`. */
  readonly name: string;
  readonly numberOfKeys: number;
  /** The resolved text: the file with its includes inlined. */
  readonly source: string;
  /** SHA1 of `source`. */
  readonly sha1: string;
  /** The included files, in the order they were inlined, relative to the script's directory. */
  readonly includes: readonly string[];
}

/** Beside this module in the source tree; the build copies them to dist/lib/redis/scripts. */
export const SCRIPTS_DIR = join(__dirname, 'scripts');
/** What `<includes>/…` names: the includes any script may use. */
export const SHARED_INCLUDES_DIR = join(SCRIPTS_DIR, 'includes');

/** A script that cannot be loaded: bad name, missing or cyclic include, a key beyond its count. */
export class LuaScriptError extends Error {
  override readonly name = 'LuaScriptError';
}

const SCRIPT_NAME = /^[a-z][a-z0-9-]*-(\d+)$/;
/** BullMQ's directive, held to one spelling: three dashes, one space, a double-quoted ref. */
const INCLUDE = /^--- @include "([^"\n]+)"[ \t]*$/;
/** Any line that looks like it meant to be a directive, so that a typo is not a silent no-op. */
const INCLUDE_LIKE = /^-{2,}\s*@include\b/;
const SHARED_PREFIX = '<includes>/';

/** Keyed by the script's absolute path: a name may exist in two directories. */
const loaded = new Map<string, LuaScript>();

/** The top-level scripts of `dir`: its `<name>-<nkeys>.lua` files (includes are in a subfolder). */
export function scriptNames(dir: string = SCRIPTS_DIR): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.lua'))
    .map((e) => e.name.slice(0, -'.lua'.length))
    .filter((name) => SCRIPT_NAME.test(name))
    .sort();
}

/**
 * Reads `<dir>/<name>.lua` once per process, includes resolved; the key count comes from the
 * name, and a script naming a KEYS[i] beyond it is refused here.
 */
export function loadScript(name: string, dir: string = SCRIPTS_DIR): LuaScript {
  const file = resolve(dir, `${name}.lua`);
  const cached = loaded.get(file);
  if (cached) return cached;
  const match = SCRIPT_NAME.exec(name);
  if (!match?.[1]) {
    throw new LuaScriptError(
      `Lua script name ${JSON.stringify(name)} must look like <name>-<nkeys>`,
    );
  }
  const numberOfKeys = Number(match[1]);
  const inlined: string[] = [];
  const source = resolveFile(file, [], null, new Set(), inlined);
  const beyond = highestKeyIndex(source);
  if (beyond > numberOfKeys) {
    throw new LuaScriptError(
      `${name}: uses KEYS[${beyond}] but its name says ${numberOfKeys} key(s)`,
    );
  }
  const script: LuaScript = {
    name,
    numberOfKeys,
    source,
    sha1: createHash('sha1').update(source).digest('hex'),
    includes: inlined.map((f) => relative(dirname(file), f)),
  };
  loaded.set(file, script);
  return script;
}

function readLua(file: string, from: string | null): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    throw new LuaScriptError(
      from ? `${from}: include not found: ${file}` : `no Lua script ${file}`,
    );
  }
}

/**
 * The file's text with each directive replaced by its include's resolved text (or by nothing
 * when that include was inlined before). `stack`: the files being resolved, outermost first;
 * `from`: the directive that named this file (for the error of a missing one).
 */
function resolveFile(
  file: string,
  stack: readonly string[],
  from: string | null,
  done: Set<string>,
  inlined: string[],
): string {
  const text = readLua(file, from);
  const chain = [...stack, file];
  const here = new Set<string>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    const at = `${file}:${i + 1}`;
    const directive = INCLUDE.exec(line);
    if (!directive) {
      if (INCLUDE_LIKE.test(line)) {
        throw new LuaScriptError(`${at}: write an include as --- @include "<name>", got ${line}`);
      }
      continue;
    }
    const ref = directive[1] ?? '';
    const target = includePath(file, ref);
    if (here.has(target)) throw new LuaScriptError(`${at}: "${ref}" is included twice`);
    here.add(target);
    if (chain.includes(target)) {
      const cycle = [...chain.slice(chain.indexOf(target)), target];
      throw new LuaScriptError(`${at}: include cycle: ${cycle.join(' -> ')}`);
    }
    if (done.has(target)) {
      // Inlined earlier in this script: its functions are already defined above this line.
      lines[i] = '';
      continue;
    }
    const body = resolveFile(target, chain, at, done, inlined);
    checkInclude(target, body);
    done.add(target);
    inlined.push(target);
    lines[i] = body.replace(/\n+$/, '');
  }
  return lines.join('\n');
}

function includePath(file: string, ref: string): string {
  const withExt = ref.endsWith('.lua') ? ref : `${ref}.lua`;
  return withExt.startsWith(SHARED_PREFIX)
    ? resolve(SHARED_INCLUDES_DIR, withExt.slice(SHARED_PREFIX.length))
    : resolve(dirname(file), withExt);
}

/** Lua code without its comments (a rough cut, enough for the checks below). */
function code(source: string): string {
  return source.replace(/--\[(=*)\[[\s\S]*?\]\1\]/g, '').replace(/--[^\n]*/g, '');
}

function checkInclude(file: string, body: string): void {
  if (/\b(KEYS|ARGV)\s*\[/.test(code(body))) {
    throw new LuaScriptError(
      `${file}: an include takes its keys and arguments as parameters; ` +
        'only the script reads KEYS and ARGV',
    );
  }
}

function highestKeyIndex(source: string): number {
  return Math.max(
    0,
    ...[...code(source).matchAll(/\bKEYS\s*\[\s*(\d+)\s*\]/g)].map((m) => Number(m[1])),
  );
}

export type ScriptArg = string | number;

function isNoScript(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOSCRIPT');
}

function isTryAgain(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('TRYAGAIN');
}

/** First pause after a TRYAGAIN; doubled on each retry, capped at TRYAGAIN_MAX_PAUSE_MS. */
const TRYAGAIN_PAUSE_MS = 5;
const TRYAGAIN_MAX_PAUSE_MS = 50;

/**
 * Runs `script` by SHA1, loading it on NOSCRIPT, within the client's command deadline (one
 * deadline for the whole call, fallback included). The reply is left to the caller to check.
 */
export async function runScript(
  client: RedisClient,
  script: LuaScript,
  keys: readonly RedisKey[],
  args: readonly ScriptArg[],
): Promise<unknown> {
  if (keys.length !== script.numberOfKeys) {
    throw new Error(`${script.name} takes ${script.numberOfKeys} key(s), got ${keys.length}`);
  }
  const options = { keys: [...keys], arguments: args.map(String) };
  const once = async (): Promise<unknown> => {
    try {
      return await client.evalSha(script.sha1, options);
    } catch (err) {
      if (!isNoScript(err)) throw err;
      return await client.eval(script.source, options);
    }
  };
  let decided = false;
  const call = async (): Promise<unknown> => {
    for (let pause = TRYAGAIN_PAUSE_MS; ; pause = Math.min(2 * pause, TRYAGAIN_MAX_PAUSE_MS)) {
      try {
        return await once();
      } catch (err) {
        if (decided || !isTryAgain(err)) throw err;
        await new Promise((resolve) => setTimeout(resolve, pause));
        if (decided) throw err;
      }
    }
  };
  return withDeadline(client, call()).finally(() => {
    decided = true;
  });
}

/** `N` numbers, as a tuple the caller destructures without a cast. */
export type Numbers<N extends number, A extends number[] = []> = A['length'] extends N
  ? A
  : Numbers<N, [...A, number]>;

/**
 * A script's reply that must be `length` numbers (the scripts' headers state their replies);
 * anything else is `fail('unexpected <what> reply: …')`, in the caller's own error class.
 */
export function replyNumbers<N extends number>(
  reply: unknown,
  length: N,
  what: string,
  fail: (message: string) => Error,
): Numbers<N> {
  if (
    Array.isArray(reply) &&
    reply.length === length &&
    reply.every((v): v is number => typeof v === 'number')
  ) {
    return reply as Numbers<N>;
  }
  throw fail(`unexpected ${what} reply: ${JSON.stringify(reply)}`);
}
