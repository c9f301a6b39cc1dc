/** `GET /v1/models` and `GET /v1/models/{id}`: a small fixed list in OpenAI's shape. */
import type { ServerResponse } from 'node:http';
import { errorBody, sendJson } from './openai-error';

export const MOCK_MODELS = [
  'gpt-4o',
  'gpt-4o-mini',
  'gpt-4.1',
  'gpt-4.1-mini',
  'gpt-3.5-turbo',
  'text-embedding-3-small',
  'text-embedding-3-large',
] as const;

// A fixed creation time keeps the answer byte-for-byte stable.
const CREATED = 1_700_000_000;

function modelObject(id: string): object {
  return { id, object: 'model', created: CREATED, owned_by: 'mock-upstream' };
}

export function listModels(res: ServerResponse): void {
  sendJson(res, 200, { object: 'list', data: MOCK_MODELS.map(modelObject) });
}

export function retrieveModel(res: ServerResponse, id: string): void {
  if ((MOCK_MODELS as readonly string[]).includes(id)) {
    sendJson(res, 200, modelObject(id));
    return;
  }
  sendJson(
    res,
    404,
    errorBody(
      `The model '${id}' does not exist`,
      'invalid_request_error',
      'model',
      'model_not_found',
    ),
  );
}
