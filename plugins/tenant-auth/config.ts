/**
 * The typed view of tenant-auth's validated config: what readConfig returns for schema.ts's
 * fields, defaults applied (unset nullable fields are null). The cross-field rules Kong's
 * schema cannot state are `checkConfig` (ready.ts), run once when an instance starts.
 */
import type { ConfigOf } from '../../lib/schema/derive';
import type { Schema } from './schema';

/** The config readConfig returns, read off the schema (lib/schema/derive.ts): they cannot drift. */
export type TenantAuthConfig = ConfigOf<typeof Schema>;
export type IdentitySourceName = TenantAuthConfig['identity_sources'][number];
export type ModelPolicyMode = TenantAuthConfig['model_policy'];
export type JwtAlgorithm = TenantAuthConfig['jwt']['algorithms'][number];
/** A plan's settings. */
export type PlanConfig = TenantAuthConfig['plans'][string];
/** A tenant's override: a null field keeps the plan's. */
export type TenantOverride = TenantAuthConfig['tenants'][string];
