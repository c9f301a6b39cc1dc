/**
 * The counting thread's task (count-pool.ts runs this file in a worker thread): a prompt's
 * tokens, with the same tokenizer as the plugin server's own thread. `{ warm: true }` builds the
 * encodings ahead (about 0.3-0.6 s), so that the first long prompt does not pay for it.
 */
import { loadEncodings } from './tokenize';
import { countPrompt, type PromptToCount } from './prompt';

export type CountTask = PromptToCount | { readonly warm: true };

export default function count(task: CountTask): number {
  if ('warm' in task) {
    loadEncodings();
    return 0;
  }
  return countPrompt(task);
}
