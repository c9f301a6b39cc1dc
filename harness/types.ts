/** Public types of the harness (see docs/harness.md). */

export type PluginServerMode = 'chain' | 'per-plugin';

export interface GatewayOptions {
  /** Path to kong.yml, or the parsed declarative object. */
  config: string | object;
  /** External plugin name -> directory the plugin server serves (exactly one plugin entry in it). */
  pluginServers: Record<string, string>;
  /**
   * `chain` (default; env KTA_PLUGINSERVER_MODE): every plugin with an entry in dist/chain/ is
   * served by one co-hosted plugin-server process; `per-plugin`: one process per plugin. A
   * plugin without an entry in dist/chain/ (a test fixture) always gets its own process.
   */
  pluginServerMode?: PluginServerMode;
  /** Default '127.0.0.1'. */
  host?: string;
  /** Default 0 (ephemeral). */
  port?: number;
  /** Directory for the sockets; default a fresh mkdtemp, removed on close. */
  prefix?: string;
  /** Extra env for the plugin-server processes. */
  env?: Record<string, string>;
  /** Plugin-server stdout/stderr and harness notes; default silent. */
  logger?: (line: string) => void;
  /**
   * kong.conf lines (`key = value`), as kong-runner writes them. The harness honours
   * `error_default_type` and `error_template_{json,html,xml,plain}` (kong/tools/http.lua) and
   * logs any other key as not mirrored.
   */
  kongConf?: Record<string, string | number | boolean>;
}

/** Per plugin, per phase: PDK calls and round trips of one request. */
export interface PhaseStats {
  /** RPC messages Kong -> plugin server in this phase: 1 HandleEvent + 1 Step per PDK call answered. */
  roundTrips: number;
  /** PDK method name (e.g. "kong.request.get_header") -> number of calls. */
  pdkCalls: Record<string, number>;
  /** Wall time of the phase as seen from the gateway, in ms. */
  ms: number;
}

export interface RequestStats {
  plugins: Record<string, Record<string, PhaseStats>>;
  totalRoundTrips: number;
  /**
   * PDK calls that raised an error on the Kong side (a Lua error in Kong): the plugin's promise is
   * left unsettled exactly as in Kong, and the error is recorded here, e.g.
   * "my-plugin log kong.request.get_method: API disabled in the context of log timer".
   */
  pdkErrors: string[];
}

/** One entry of `kong-js-pluginserver --dump-all-plugins`, as Kong reads it. */
export interface PluginDump {
  Name: string;
  Version?: string;
  Priority: number;
  Phases: string[];
  Schema: { name: string; fields: Array<Record<string, SchemaField>> };
}

/** A Kong schema field definition (kong/db/schema/init.lua), the subset found in plugin schemas. */
export interface SchemaField {
  type?: string;
  required?: boolean;
  default?: unknown;
  one_of?: unknown[];
  not_one_of?: unknown[];
  between?: [number, number];
  gt?: number;
  eq?: unknown;
  len_eq?: number;
  len_min?: number;
  len_max?: number;
  match?: string;
  not_match?: string;
  starts_with?: string;
  elements?: SchemaField;
  keys?: SchemaField;
  values?: SchemaField;
  fields?: Array<Record<string, SchemaField>>;
  [other: string]: unknown;
}

export interface Gateway {
  readonly url: string;
  readonly port: number;
  /** PDK round trips of a request, keyed by the X-Kong-Request-Id response header. */
  requestStats(requestId: string): RequestStats | undefined;
  /** Resolves when the log phase of that request has finished (or been abandoned as in Kong). */
  logDone(requestId: string): Promise<void>;
  pluginServerInfo(name: string): { pid: number; restarts: number; dump: PluginDump };
  /**
   * Dies like a node that loses power: every process it started is SIGKILLed at once, open
   * connections drop, no phase (log included) runs any more, nothing is released. For tests of
   * what the rest of a cluster sees when one node dies. `close()` still tidies up after it.
   */
  kill(): Promise<void>;
  /** Stops every process it started and removes the prefix it created. */
  close(): Promise<void>;
}
