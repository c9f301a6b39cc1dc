/**
 * A mock OpenAI-compatible upstream for tests, benchmarks and `npm start`. See
 * docs/mock-upstream.md for the endpoints, knobs and control API.
 */
export { startMockUpstream } from './server';
export type { MockStats, MockUpstream, StartOptions, UpstreamUsage } from './server';
export { DEFAULT_KNOBS } from './knobs';
export type { FailureSpec, MockKnobs } from './knobs';
export type { ReceivedRequest } from './recording';
export { mockAnswerText } from './chat';
export { embedText } from './hashed-embedding';
