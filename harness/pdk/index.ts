// PDK dispatch: method name -> implementation. Methods missing here are answered with StepError
// naming the method (the harness's rule: never a hang), see docs/harness.md.
import { clientPdk } from './client';
import { NotImplementedError, type PdkFn } from './core';
import { miscPdk } from './misc';
import { requestPdk } from './request';
import { responsePdk } from './response';
import { servicePdk } from './service';

const TABLE: Record<string, PdkFn> = {
  ...requestPdk,
  ...clientPdk,
  ...servicePdk,
  ...responsePdk,
  ...miscPdk,
};

export function findPdkMethod(method: string): PdkFn {
  const fn = TABLE[method];
  if (!fn)
    throw new NotImplementedError(
      `harness: PDK method ${method} is not implemented by the Kong 3.9 harness`,
    );
  return fn;
}

/** mp_rpc.lua get_step_method: typed Step methods for entity results. */
const STEP_METHODS: Record<string, string> = {
  'kong.client.get_credential': 'plugin.StepCredential',
  'kong.client.load_consumer': 'plugin.StepConsumer',
  'kong.client.get_consumer': 'plugin.StepConsumer',
  'kong.client.authenticate': 'plugin.StepCredential',
  'kong.node.get_memory_stats': 'plugin.StepMemoryStats',
  'kong.router.get_route': 'plugin.StepRoute',
  'kong.router.get_service': 'plugin.StepService',
  'kong.request.get_query': 'plugin.StepMultiMap',
  'kong.request.get_headers': 'plugin.StepMultiMap',
  'kong.response.get_headers': 'plugin.StepMultiMap',
  'kong.service.response.get_headers': 'plugin.StepMultiMap',
};

export const stepMethodFor = (method: string): string => STEP_METHODS[method] ?? 'plugin.Step';
export { ExitSignal, KongLuaError, NotImplementedError, type PdkEnv } from './core';
