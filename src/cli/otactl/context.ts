/**
 * What every otactl command shares: the global options, the configuration (the light read, see
 * src/config/client-config.ts), the API client and the output helpers. Loaded by each command, so
 * it imports nothing a simple request does not need.
 */
import { existsSync } from 'node:fs';
import { ApiClient, readTokenFile, resolveApiUrl } from '../../api/client.js';
import { readClientConfig, type ClientConfig } from '../../config/client-config.js';
import { OtaError } from '../../core/errors.js';

export interface Globals {
  config?: string;
  url?: string;
  tokenFile?: string;
  json?: boolean;
}

export const out = (s: string): void => {
  process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
};
export const iso = (ms: number | null | undefined): string => (ms ? new Date(ms).toISOString().replace('.000Z', 'Z') : '-');
export const printJson = (value: unknown): void => out(JSON.stringify(value, null, 2));

export class CliContext {
  private cachedConfig: Promise<ClientConfig> | null = null;

  constructor(readonly globals: Globals) {}

  get json(): boolean {
    return this.globals.json === true;
  }

  config(): Promise<ClientConfig> {
    const g = this.globals;
    this.cachedConfig ??= readClientConfig({ ...(g.config ? { path: g.config } : {}), allowMissingDefault: true });
    return this.cachedConfig;
  }

  async client(): Promise<ApiClient> {
    const g = this.globals;
    const cfg = await this.config();
    const url = resolveApiUrl({ url: g.url, env: process.env, config: cfg });
    const tokenFile = g.tokenFile ?? process.env.OTA_TOKEN_FILE ?? cfg.api.tokensFile;
    let token: string | null = null;
    if (existsSync(tokenFile)) {
      try {
        token = readTokenFile(tokenFile);
      } catch (error) {
        throw new OtaError('CONFIG_INVALID', `cannot read the token file ${tokenFile}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
      }
    } else if (g.tokenFile ?? process.env.OTA_TOKEN_FILE) {
      throw new OtaError('CONFIG_NOT_FOUND', `token file ${tokenFile} does not exist`);
    }
    return new ApiClient(url, token);
  }
}
