/** Kong entities as the harness holds them after reading kong.yml (field names as in Kong's DAO). */

export interface ServiceEntity {
  id: string;
  name?: string;
  protocol: 'http' | 'https';
  host: string;
  port: number;
  path?: string;
  connect_timeout: number;
  read_timeout: number;
  write_timeout: number;
  retries: number;
  tags?: string[];
  enabled: boolean;
}

export interface RouteEntity {
  id: string;
  name?: string;
  paths?: string[];
  methods?: string[];
  hosts?: string[];
  protocols: string[];
  strip_path: boolean;
  preserve_host: boolean;
  regex_priority: number;
  path_handling: 'v0' | 'v1';
  service?: { id: string };
  tags?: string[];
}

export interface ConsumerEntity {
  id: string;
  username?: string;
  custom_id?: string;
  tags?: string[];
  created_at: number;
}

export interface KeyAuthCredentialEntity {
  id: string;
  key: string;
  consumer: { id: string };
  tags?: string[];
  created_at: number;
}

export interface PluginEntity {
  id: string;
  name: string;
  enabled: boolean;
  /** Raw config as written in kong.yml; validated against the plugin's schema later. */
  rawConfig: unknown;
  /** Validated config with defaults filled in. */
  config: Record<string, unknown>;
  route?: { id: string };
  service?: { id: string };
  consumer?: { id: string };
  protocols: string[];
  /** Human label for error messages, e.g. "on route 'ai'". */
  scopeLabel: string;
}

export interface DeclarativeConfig {
  services: ServiceEntity[];
  routes: RouteEntity[];
  consumers: ConsumerEntity[];
  keyauthCredentials: KeyAuthCredentialEntity[];
  plugins: PluginEntity[];
}
