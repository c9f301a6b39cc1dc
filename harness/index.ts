export { startGateway } from './gateway';
export { ConfigError } from './config/declarative';
export type { HarnessGateway } from './gateway';
export type { Gateway, GatewayOptions, PhaseStats, PluginDump, RequestStats } from './types';
