import { describe, expect, it } from 'vitest';
import { OtaError } from '../../../src/core/errors.js';
import { mapTufError } from '../../../src/trust/error-map.js';

describe('mapTufError', () => {
  it.each([
    ['timestamp was signed by 0/1 keys', 'TRUST_SIGNATURE'],
    ['Final timestamp.json is expired', 'TRUST_EXPIRED'],
    ['Expected version 2, got 3', 'TRUST_ROLLBACK'],
    ['New timestamp version 2 is less than current version 3', 'TRUST_ROLLBACK'],
    ["Snapshot version doesn't match timestamp", 'TRUST_MIX_AND_MATCH'],
    ['Unable to load snapshot metadata error Error: Expected hash abc but got def', 'TRUST_MIX_AND_MATCH'],
    ['Unable to load targets error Error: Expected length 10 but got 12', 'TRUST_MIX_AND_MATCH'],
    ['Version 2 of targets does not match snapshot version 3', 'TRUST_MIX_AND_MATCH'],
    ['Max length reached', 'TRUST_METADATA_TOO_LARGE'],
    ['Unexpected token } in JSON at position 3', 'TRUST_METADATA_INVALID'],
    ['something nobody expected', 'TRUST_METADATA_INVALID'],
  ])('%s → %s', (message, code) => {
    expect(mapTufError(new Error(message)).code).toBe(code);
  });

  it('prefers the fetcher error that tuf-js flattened into a string', () => {
    const fetchError = new OtaError('NETWORK_RESET', 'connection reset while fetching x');
    const wrapped = new Error(`Unable to load snapshot metadata error ${fetchError.message}`);
    expect(mapTufError(wrapped, fetchError)).toBe(fetchError);
  });

  it('keeps HTTP status errors as network codes', () => {
    const e = Object.assign(new Error('Failed to download'), { statusCode: 503 });
    expect(mapTufError(e).code).toBe('HTTP_STATUS');
  });
});
