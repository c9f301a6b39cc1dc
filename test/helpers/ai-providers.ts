/**
 * The providers ai-proxy is tested against (test/helpers/ai-proxy-door.ts): each one's model,
 * options and stub path on the mock upstream, and the Gemini stub, served over TLS as Vertex AI
 * is reached.
 */
import { execFileSync } from 'node:child_process';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Closers } from './frontdoor';
import { geminiGenerate } from '../../mock-upstream/gemini';

export const CLAUDE = 'claude-3-5-haiku-20241022';

export const GEMINI = 'gemini-2.0-flash';

export interface GeminiStub {
  port: number;
  requests: unknown[];
  paths: string[];
  billed: { prompt: number; completion: number };
}

/** The Gemini stub (mock-upstream/gemini.ts) over TLS, as Vertex AI is reached (self-signed). */
export async function startGeminiStub(closers: Closers): Promise<GeminiStub> {
  const dir = mkdtempSync(path.join(tmpdir(), 'kta-gemini-'));
  closers.add(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      '/CN=127.0.0.1',
      '-days',
      '1',
      '-keyout',
      path.join(dir, 'key.pem'),
      '-out',
      path.join(dir, 'cert.pem'),
    ],
    { stdio: 'ignore' },
  );
  const stub: GeminiStub = {
    port: 0,
    requests: [],
    paths: [],
    billed: { prompt: 0, completion: 0 },
  };
  const server = createHttpsServer(
    {
      key: readFileSync(path.join(dir, 'key.pem')),
      cert: readFileSync(path.join(dir, 'cert.pem')),
    },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        stub.paths.push(req.url ?? '');
        try {
          stub.requests.push(JSON.parse(raw.toString('utf8')));
        } catch {
          stub.requests.push(null);
        }
        geminiGenerate(req, res, raw, (u) => {
          stub.billed.prompt += u.promptTokenCount;
          stub.billed.completion += u.candidatesTokenCount;
        });
      });
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  stub.port = (server.address() as AddressInfo).port;
  closers.add(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return stub;
}

export type Provider =
  | 'openai'
  | 'anthropic'
  | 'mistral'
  | 'gemini'
  | 'cohere'
  | 'bedrock'
  | 'llama2'
  | 'huggingface'
  | 'azure'
  | 'llama2-raw';

/** The model a cohere route serves (Cohere's Chat API v1 stub: mock-upstream/cohere.ts). */
export const COHERE = 'command-r';
/** The model a bedrock route serves (Bedrock's Converse stub: mock-upstream/bedrock.ts). */
export const BEDROCK = 'anthropic.claude-3-haiku-20240307-v1:0';
/** The model a llama2 route serves, in Ollama's format (Ollama's chat stub: mock-upstream/ollama.ts). */
export const OLLAMA = 'llama3.1:8b';
/**
 * The model a huggingface route serves: its chat API is OpenAI's format, served by the mock's
 * chat endpoint (which honours `max_tokens` and ignores the `parameters` Kong's driver adds).
 */
export const HUGGINGFACE = 'meta-llama/Llama-3.1-8B-Instruct';

export type Price = { prompt_per_million: number; completion_per_million: number };

/**
 * How ai-proxy reaches each provider's stub on the mock (Gemini's is served apart, over TLS):
 * the model the plans serve, whether ai-proxy names it, its options, the path of
 * `upstream_url` on the mock, and its price (OpenAI's and Mistral's models are kong.yml's own).
 */
export const PROVIDER_ROUTES: Record<
  Exclude<Provider, 'gemini'>,
  {
    model: string;
    named: boolean;
    options: Record<string, unknown>;
    path: string;
    price?: Price;
    /** Kong's name of the provider, when not the key. */
    kong?: string;
    /** The ai-proxy entry of examples/kong-ai-plugins/<example> (what the docs show), tested. */
    example?: string;
  }
> = {
  openai: { model: 'gpt-4o-mini', named: false, options: {}, path: '/v1/chat/completions' },
  mistral: {
    model: 'gpt-4o-mini',
    named: false,
    options: { mistral_format: 'openai' },
    path: '/v1/chat/completions',
  },
  anthropic: {
    model: CLAUDE,
    named: false,
    options: {},
    path: '/v1/messages',
    example: 'anthropic.yml',
    price: { prompt_per_million: 0.8, completion_per_million: 4 },
  },
  cohere: {
    model: COHERE,
    named: true,
    options: {},
    path: '/v1/chat',
    price: { prompt_per_million: 0.15, completion_per_million: 0.6 },
  },
  bedrock: {
    model: BEDROCK,
    named: true,
    options: { bedrock: { aws_region: 'us-east-1' } },
    path: `/model/${encodeURIComponent(BEDROCK)}/converse`,
    price: { prompt_per_million: 0.25, completion_per_million: 1.25 },
  },
  // A self-hosted model still costs the platform: priced, as every served model must be.
  llama2: {
    model: OLLAMA,
    named: true,
    options: { llama2_format: 'ollama' },
    path: '/api/chat',
    example: 'ollama.yml',
    price: { prompt_per_million: 0.05, completion_per_million: 0.1 },
  },
  // A llama2 "raw" endpoint (mock-upstream/ollama.ts `llamaRawGenerate`): it reports no usage.
  'llama2-raw': {
    kong: 'llama2',
    model: 'llama-2-7b-chat',
    named: true,
    options: { llama2_format: 'raw' },
    path: '/generate',
    price: { prompt_per_million: 0.05, completion_per_million: 0.1 },
  },
  // Azure OpenAI: OpenAI's format; Kong adds ?api-version= (the stub's path is the chat's).
  azure: {
    model: 'gpt-4o-mini',
    named: true,
    options: {
      azure_instance: 'kta-test',
      azure_deployment_id: 'gpt-4o-mini',
      azure_api_version: '2024-10-21',
    },
    path: '/v1/chat/completions',
  },
  // Kong's huggingface driver appends /v1/chat/completions to upstream_url itself.
  huggingface: {
    model: HUGGINGFACE,
    named: true,
    options: {},
    path: '',
    example: 'huggingface.yml',
    price: { prompt_per_million: 0.1, completion_per_million: 0.2 },
  },
};
