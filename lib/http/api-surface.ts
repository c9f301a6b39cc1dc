/**
 * The OpenAI API surface, as named APIs: each is a set of endpoints (methods and a path under
 * the API's base path, `/v1` for OpenAI). A plan serves the APIs it lists (tenant-auth
 * `api_surface`); every other request is refused before any upstream call. Pure data and
 * pure functions; tenant-auth does the PDK calls (plugins/tenant-auth/surface.ts).
 *
 * Why named APIs and not path patterns in the config: an operator enabling "files" means every
 * endpoint of the Files API, and a pattern written by hand is how a sibling endpoint (a file's
 * `/content`, a response's `/input_items`) slips through. The catalogue knows the siblings.
 *
 * Matching, on the path Kong sends upstream after its own normalisation (lib/http/path.ts):
 * literal segments in any case (an upstream that matches case-insensitively must not turn
 * `/v1/Files` into the Files API behind a gate that only knew `files`), one optional trailing
 * slash, `{id}` one segment. A path that still holds an encoded `/` or `\` (Kong keeps `%2F`
 * and `%5C` encoded, an upstream may decode them and resolve `..` afterwards) or a raw `\`
 * matches nothing.
 */
import { normalisePath } from './path';

/** Methods that carry no body: what goes upstream for them carries none either. */
export const BODYLESS_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'DELETE']);

export interface ApiEndpoint {
  /** Upper case; GET implies HEAD. */
  readonly methods: readonly string[];
  /** Segments under the base path; `{id}` is one segment of an object id, `**` any rest. */
  readonly path: string;
}

export interface ApiDefinition {
  readonly name: string;
  readonly title: string;
  /** Served unless a plan says otherwise. */
  readonly byDefault: boolean;
  readonly endpoints: readonly ApiEndpoint[];
}

const e = (methods: string, path: string): ApiEndpoint => ({
  methods: methods.split(',').map((m) => m.trim().toUpperCase()),
  path,
});

/** Every API the gateway knows by name. Unknown paths are refused with 404 `unknown_api`. */
export const API_CATALOGUE: readonly ApiDefinition[] = [
  {
    name: 'chat',
    title: 'Chat Completions',
    byDefault: true,
    endpoints: [e('POST', '/chat/completions')],
  },
  {
    name: 'completions',
    title: 'Completions (legacy)',
    byDefault: true,
    endpoints: [e('POST', '/completions')],
  },
  { name: 'responses', title: 'Responses', byDefault: true, endpoints: [e('POST', '/responses')] },
  {
    name: 'embeddings',
    title: 'Embeddings',
    byDefault: true,
    endpoints: [e('POST', '/embeddings')],
  },
  {
    name: 'models',
    title: 'Models',
    byDefault: true,
    endpoints: [e('GET', '/models'), e('GET', '/models/{id}')],
  },
  {
    // Answered by token-meter from the tenant's own ledger, never forwarded.
    name: 'showback',
    title: 'Usage and Costs (showback)',
    byDefault: true,
    endpoints: [e('GET', '/organization/usage/completions'), e('GET', '/organization/costs')],
  },
  // Opt-in. Stateless ones first; the stateful ones keep objects at the provider under the
  // provider key: with a key shared by several tenants, one tenant reads another's objects.
  {
    name: 'moderations',
    title: 'Moderations',
    byDefault: false,
    endpoints: [e('POST', '/moderations')],
  },
  {
    name: 'images',
    title: 'Images',
    byDefault: false,
    endpoints: [
      e('POST', '/images/generations'),
      e('POST', '/images/edits'),
      e('POST', '/images/variations'),
    ],
  },
  {
    name: 'audio',
    title: 'Audio',
    byDefault: false,
    endpoints: [
      e('POST', '/audio/speech'),
      e('POST', '/audio/transcriptions'),
      e('POST', '/audio/translations'),
    ],
  },
  {
    name: 'stored_chat_completions',
    title: 'Stored chat completions',
    byDefault: false,
    endpoints: [
      e('GET', '/chat/completions'),
      e('GET,POST,DELETE', '/chat/completions/{id}'),
      e('GET', '/chat/completions/{id}/messages'),
    ],
  },
  {
    name: 'stored_responses',
    title: 'Stored responses',
    byDefault: false,
    endpoints: [
      e('GET,DELETE', '/responses/{id}'),
      e('GET', '/responses/{id}/input_items'),
      e('POST', '/responses/{id}/cancel'),
    ],
  },
  {
    name: 'files',
    title: 'Files',
    byDefault: false,
    endpoints: [
      e('GET,POST', '/files'),
      e('GET,DELETE', '/files/{id}'),
      e('GET', '/files/{id}/content'),
    ],
  },
  {
    name: 'uploads',
    title: 'Uploads',
    byDefault: false,
    endpoints: [e('POST', '/uploads'), e('POST', '/uploads/{id}/**')],
  },
  {
    name: 'batches',
    title: 'Batches',
    byDefault: false,
    endpoints: [
      e('GET,POST', '/batches'),
      e('GET', '/batches/{id}'),
      e('POST', '/batches/{id}/cancel'),
    ],
  },
  {
    name: 'vector_stores',
    title: 'Vector stores',
    byDefault: false,
    endpoints: [e('GET,POST', '/vector_stores'), e('GET,POST,DELETE', '/vector_stores/{id}/**')],
  },
  {
    name: 'assistants',
    title: 'Assistants',
    byDefault: false,
    endpoints: [e('GET,POST,DELETE', '/assistants/**')],
  },
  {
    name: 'threads',
    title: 'Threads',
    byDefault: false,
    endpoints: [e('GET,POST,DELETE', '/threads/**')],
  },
  {
    name: 'fine_tuning',
    title: 'Fine-tuning',
    byDefault: false,
    endpoints: [e('GET,POST,DELETE', '/fine_tuning/**')],
  },
  {
    name: 'conversations',
    title: 'Conversations',
    byDefault: false,
    endpoints: [e('POST', '/conversations'), e('GET,POST,DELETE', '/conversations/{id}/**')],
  },
];

export const API_NAMES: readonly string[] = API_CATALOGUE.map((a) => a.name);
export const DEFAULT_API_SURFACE: readonly string[] = API_CATALOGUE.filter((a) => a.byDefault).map(
  (a) => a.name,
);

/** What the gate makes of one request. */
export type ApiVerdict =
  | {
      readonly kind: 'served';
      readonly api: string;
      /** The catalogue path matched (`/files/{id}/content`): which endpoint of the API. */
      readonly endpoint: string;
      /** The `{id}` segment of the path as sent (not decoded), or null when it has none. */
      readonly id: string | null;
      /** What `**` matched after the id (`/files`, `/parts`), '' for none or no `**`. */
      readonly tail: string;
    }
  /** A known API the surface does not include. */
  | { readonly kind: 'not_enabled'; readonly api: string; readonly title: string }
  /** A path the surface serves, with another method: the methods it takes there. */
  | { readonly kind: 'wrong_method'; readonly allow: readonly string[] }
  | { readonly kind: 'unknown' };

const ID_SEGMENT = '[^/]+';

function compile(base: string, path: string): RegExp {
  const parts = path
    .split('/')
    .filter((s) => s !== '')
    .map((s) => {
      if (s === '{id}') return `/(${ID_SEGMENT})`;
      if (s === '**') return '((?:/[^/]+)*)';
      return `/${s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`;
    });
  const b = base.replace(/\/+$/, '').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${b}${parts.join('')}/?$`, 'i');
}

interface CompiledEndpoint {
  readonly api: ApiDefinition;
  readonly path: string;
  readonly methods: ReadonlySet<string>;
  readonly pattern: RegExp;
}

/** The catalogue compiled under one base path (once per plugin instance). */
export class ApiSurfaceMatcher {
  private readonly endpoints: readonly CompiledEndpoint[];

  constructor(readonly basePath: string) {
    this.endpoints = API_CATALOGUE.flatMap((api) =>
      api.endpoints.map((ep) => ({
        api,
        path: ep.path,
        methods: new Set(ep.methods.includes('GET') ? [...ep.methods, 'HEAD'] : ep.methods),
        pattern: compile(basePath, ep.path),
      })),
    );
  }

  /**
   * The verdict for `method` on `upstreamPath` (Kong's normalised upstream path, no query)
   * under the APIs `enabled`.
   */
  decide(method: string, upstreamPath: string, enabled: ReadonlySet<string>): ApiVerdict {
    const m = method.toUpperCase();
    const path = normalisePathForMatch(upstreamPath);
    if (path === null) return { kind: 'unknown' };
    let known: ApiDefinition | undefined;
    const allow = new Set<string>();
    for (const ep of this.endpoints) {
      const match = ep.pattern.exec(path);
      if (match === null) continue;
      const on = enabled.has(ep.api.name);
      if (ep.methods.has(m)) {
        if (on) {
          const id = ep.path.includes('{id}') ? (match[1] ?? null) : null;
          const tail = ep.path.endsWith('**')
            ? (match[ep.path.includes('{id}') ? 2 : 1] ?? '')
            : '';
          return { kind: 'served', api: ep.api.name, endpoint: ep.path, id, tail };
        }
        known ??= ep.api;
      } else if (on) {
        for (const x of ep.methods) allow.add(x);
      }
    }
    if (known) return { kind: 'not_enabled', api: known.name, title: known.title };
    if (allow.size > 0) return { kind: 'wrong_method', allow: [...allow] };
    return { kind: 'unknown' };
  }
}

/**
 * The path the catalogue is matched on, or null when it must match nothing: an encoded `/` or
 * `\` (`%2F`, `%5C`, which Kong keeps encoded) or a raw `\` could turn into a separator at an
 * upstream that decodes or folds them, after the gate decided.
 */
export function normalisePathForMatch(upstreamPath: string): string | null {
  const q = upstreamPath.indexOf('?');
  const path = normalisePath(q < 0 ? upstreamPath : upstreamPath.slice(0, q));
  if (/%2f|%5c|\\/i.test(path)) return null;
  return path;
}

/**
 * What a POST to `upstreamPath` spends at the provider, for token-meter: `none` for the
 * endpoints that make or change an object without generating (a file upload, an upload's
 * parts, a metadata update, a cancel, a vector store and its files and searches: billed by the
 * provider as storage, not tokens), `batch` for a batch (its tokens are spent later, by
 * the provider: reserved at creation from its input file, plugins/token-meter/batch/),
 * `training` for a fine-tuning job (refused), `tokens` for everything else (chat,
 * completions, responses, embeddings, and any path not known here: metered, never waved
 * through).
 */
export function postSpends(upstreamPath: string): 'none' | 'batch' | 'training' | 'tokens' {
  const path = normalisePathForMatch(upstreamPath);
  if (path === null) return 'tokens';
  const p = path.replace(/\/+$/, '').toLowerCase();
  if (/\/batches$/.test(p)) return 'batch';
  if (/\/fine_tuning\/jobs$/.test(p)) return 'training';
  if (
    /\/files$/.test(p) ||
    /\/uploads(\/[^/]+\/(parts|complete|cancel))?$/.test(p) ||
    /\/vector_stores(\/.*)?$/.test(p) ||
    /\/conversations(\/.*)?$/.test(p) ||
    /\/(responses|batches)\/[^/]+\/cancel$/.test(p) ||
    /\/fine_tuning\/jobs\/[^/]+\/(cancel|pause|resume)$/.test(p) ||
    /\/chat\/completions\/[^/]+$/.test(p)
  ) {
    return 'none';
  }
  return 'tokens';
}
