// Work that must happen even when the process that started a gateway exits without calling
// gateway.close() (process.exit(), an uncaught exception, a test runner ending its worker).
// Kong's master stops its plugin servers when it stops (kong/runloop/plugin_servers/process.lua
// stop_pluginservers); without this the kong-js-pluginserver children would be orphaned.
// One 'exit' listener for all gateways in the process, present only while a hook is registered.
type Hook = () => void;

const hooks = new Set<Hook>();

function runHooks(): void {
  const pending = [...hooks];
  hooks.clear();
  process.off('exit', runHooks);
  for (const hook of pending) {
    try {
      hook();
    } catch {
      // The process is exiting: one failing hook must not keep the others from running.
    }
  }
}

/** Runs `hook` (synchronously, once) when the process exits; the result removes it again. */
export function addExitHook(hook: Hook): () => void {
  if (hooks.size === 0) process.on('exit', runHooks);
  hooks.add(hook);
  return () => {
    hooks.delete(hook);
    if (hooks.size === 0) process.off('exit', runHooks);
  };
}

/** Number of registered hooks and 'exit' listeners from this module (for tests). */
export function exitHookState(): { hooks: number; listening: boolean } {
  return { hooks: hooks.size, listening: process.listeners('exit').includes(runHooks) };
}
