/**
 * Lua scripts kept as files under ./scripts, named `<name>-<number of keys>.lua` (as BullMQ
 * does), read once per process and called by SHA1.
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
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { withDeadline, type RedisClient } from './client';
import type { RedisKey } from './keys';

export interface LuaScript {
  /** File name without `.lua`, e.g. `token-bucket-1`. */
  readonly name: string;
  readonly numberOfKeys: number;
  readonly source: string;
  readonly sha1: string;
}

/** Beside this module in the source tree; the build copies them to dist/lib/redis/scripts. */
export const SCRIPTS_DIR = join(__dirname, 'scripts');

const SCRIPT_NAME = /^[a-z][a-z0-9-]*-(\d+)$/;
const loaded = new Map<string, LuaScript>();

/** Reads `scripts/<name>.lua` once per process; the key count comes from the name. */
export function loadScript(name: string): LuaScript {
  const cached = loaded.get(name);
  if (cached) return cached;
  const match = SCRIPT_NAME.exec(name);
  if (!match?.[1]) {
    throw new Error(`Lua script name ${JSON.stringify(name)} must look like <name>-<nkeys>`);
  }
  const source = readFileSync(join(SCRIPTS_DIR, `${name}.lua`), 'utf8');
  const script: LuaScript = {
    name,
    numberOfKeys: Number(match[1]),
    source,
    sha1: createHash('sha1').update(source).digest('hex'),
  };
  loaded.set(name, script);
  return script;
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
