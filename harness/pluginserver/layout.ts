/**
 * Which plugin-server process serves which plugin: one co-hosted process for the chain (the
 * default), or one process per plugin. Both gateways (the harness and kong-runner's real Kong)
 * decide it here, the compose stack in docker/kong-pluginservers.sh by the same rule.
 *
 * Co-hosting is the cheaper layout per request (one Node event loop, no idle process to wake for
 * each phase, the request's facts kept in memory between plugins: docs/architecture.md, "One
 * request through the chain"); per-plugin spreads the chain's CPU over cores and confines a
 * crash to one plugin. docs/operations.md states the trade-off with measurements.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { PluginServerMode } from '../types';

function projectRoot(): string {
  // From harness/pluginserver (tsx) or dist/harness/pluginserver (compiled).
  let dir = __dirname;
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  throw new Error(`no package.json above ${__dirname}`);
}

/** The co-hosted server's directory: one entry file per plugin of the chain (scripts/build.js). */
export const CHAIN_DIR = join(projectRoot(), 'dist', 'chain');
/**
 * What Kong's query command dumps for a co-hosted plugin: its chain entry alone (the phases the
 * chain serves it with, lib/pluginserver/chain-entry.ts), as docker/kong-pluginservers.sh does.
 */
export function chainQueryDir(name: string, chainDir = CHAIN_DIR): string {
  return join(dirname(chainDir), 'chain-query', name);
}

/** The co-hosted server's name (its log prefix) and socket name, in the gateway's socket dir. */
export const CHAIN_PROCESS = 'kta-chain';
export const CHAIN_SOCKET = `${CHAIN_PROCESS}.sock`;

/** The mode asked for, else KTA_PLUGINSERVER_MODE, else `chain`; anything else is an error. */
export function resolvePluginServerMode(
  asked: PluginServerMode | undefined,
  env: NodeJS.ProcessEnv = process.env,
): PluginServerMode {
  const mode = asked ?? env.KTA_PLUGINSERVER_MODE ?? 'chain';
  if (mode !== 'chain' && mode !== 'per-plugin') {
    throw new Error(`KTA_PLUGINSERVER_MODE must be 'chain' or 'per-plugin', got '${mode}'`);
  }
  return mode;
}

/** Whether `name` is served by the co-hosted process in this mode. */
export function isCoHosted(name: string, mode: PluginServerMode, chainDir = CHAIN_DIR): boolean {
  return mode === 'chain' && existsSync(join(chainDir, `${name}.js`));
}
