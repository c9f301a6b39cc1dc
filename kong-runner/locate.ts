/**
 * Where the real Kong 3.9 is on this machine, if anywhere. Looked for, in order:
 *   1. `KONG_INSTALL_DIR` (a directory with `bin/kong`), or `KONG_PREFIX` when it holds
 *      `bin/kong` (Kong itself reads `KONG_PREFIX` as its runtime prefix, so the runner never
 *      passes it on);
 *   2. `/opt/kong-3.9.3` (where `shared/kong`'s tarball unpacks; `scripts/services/kong.sh
 *      install` unpacks it after checking SHA256SUMS);
 *   3. `kong` on PATH.
 * Only 3.9.x is accepted: the plugins and the harness mirror Kong 3.9.3.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';

export interface KongInstall {
  /** The `kong` CLI. */
  readonly bin: string;
  /** `kong-env.sh` of a tarball install (PATH, LUA_PATH, LUA_CPATH), when there is one. */
  readonly envScript: string | undefined;
  readonly version: string;
}

export const DEFAULT_KONG_INSTALL_DIR = '/opt/kong-3.9.3';

function candidates(env: NodeJS.ProcessEnv): string[] {
  const dirs: string[] = [];
  if (env.KONG_INSTALL_DIR) dirs.push(env.KONG_INSTALL_DIR);
  if (env.KONG_PREFIX && existsSync(join(env.KONG_PREFIX, 'bin', 'kong')))
    dirs.push(env.KONG_PREFIX);
  dirs.push(DEFAULT_KONG_INSTALL_DIR);
  return dirs;
}

/** Runs `kong version` the way the runner will run Kong; undefined when it does not answer 3.9.x. */
function probe(bin: string, envScript: string | undefined): KongInstall | undefined {
  try {
    const out = envScript
      ? execFileSync('bash', ['-c', `. "${envScript}" >/dev/null 2>&1 && exec "${bin}" version`], {
          encoding: 'utf8',
          timeout: 20000,
          env: kongEnv(process.env),
        })
      : execFileSync(bin, ['version'], {
          encoding: 'utf8',
          timeout: 20000,
          env: kongEnv(process.env),
        });
    const version = out.trim().split(/\s+/).pop() ?? '';
    return /^3\.9\./.test(version) ? { bin, envScript, version } : undefined;
  } catch {
    return undefined;
  }
}

/** The environment Kong's CLI gets: ours without KONG_* (Kong would read them as its config). */
export function kongEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('KONG_')));
}

export function locateKong(env: NodeJS.ProcessEnv = process.env): KongInstall | undefined {
  for (const dir of candidates(env)) {
    const bin = join(dir, 'bin', 'kong');
    if (!existsSync(bin)) continue;
    const script = join(dir, 'kong-env.sh');
    const found = probe(bin, existsSync(script) ? script : undefined);
    if (found) return found;
  }
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    const bin = join(dir, 'kong');
    if (dir && existsSync(bin)) {
      const found = probe(bin, undefined);
      if (found) return found;
    }
  }
  return undefined;
}
