/**
 * A `POST /files` body as the provider reads it: its `purpose` field and its file, from the
 * multipart form every OpenAI SDK sends (parsed with busboy). Pure: tested in
 * test/unit/token-meter-batch-input.test.ts.
 */
import busboy from 'busboy';
import { invalidRequest } from '../refusals';

/** A multipart upload's `purpose` field and its file, as the provider would read them. */
export interface Upload {
  readonly purpose: string | null;
  readonly file: Buffer | null;
}

/**
 * The `purpose` and `file` parts of a `multipart/form-data` body (what every OpenAI SDK sends
 * to `POST /files`). Another content type has neither (null, null).
 */
export function readUpload(body: Buffer, contentType: string): Promise<Upload> {
  if (!/^multipart\/form-data\s*;/i.test(contentType)) {
    return Promise.resolve({ purpose: null, file: null });
  }
  return new Promise((resolve, reject) => {
    let purpose: string | null = null;
    let file: Buffer | null = null;
    let parser: busboy.Busboy;
    try {
      parser = busboy({ headers: { 'content-type': contentType }, limits: { files: 1 } });
    } catch {
      reject(invalidRequest('invalid_multipart', 'the multipart body has no usable boundary'));
      return;
    }
    parser.on('field', (name, value) => {
      if (name === 'purpose') purpose = value;
    });
    parser.on('file', (name, stream) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if (name === 'file') file = Buffer.concat(chunks);
      });
    });
    parser.on('error', () =>
      reject(invalidRequest('invalid_multipart', 'the multipart body could not be read')),
    );
    parser.on('close', () => resolve({ purpose, file }));
    parser.end(body);
  });
}
