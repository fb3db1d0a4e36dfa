/**
 * Can a product's services be found on this host, before anything needs to stop or start them?
 * The same choice the daemon makes (src/services/choice.ts `serviceChooser`): systemd when
 * the product lists `services` and systemctl works here, else the process manager for
 * `processUnits`. Asked by `otad --check-config`, so a typo in a unit name is found at install
 * time rather than in the middle of an update, with the old release already stopped.
 */
import { execFile } from 'node:child_process';
import type { ProductConfig } from '../config/schema.js';
import { isOtaError } from '../core/errors.js';
import { findProgram } from './process-manager.js';
import { assertUnitName } from './service-manager.js';

export interface ServiceProblem {
  product: string;
  unit: string;
  message: string;
}

export interface ResolveOptions {
  systemctlPath?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

function run(file: string, args: string[], opts: ResolveOptions): Promise<{ ok: boolean; stdout: string; stderr: string; spawnError?: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: opts.timeoutMs ?? 5000, killSignal: 'SIGKILL', env: opts.env ?? process.env, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error === null) return resolve({ ok: true, stdout, stderr });
      const code = (error as NodeJS.ErrnoException).code;
      resolve({ ok: false, stdout, stderr, ...(typeof code === 'string' ? { spawnError: code } : {}) });
    });
  });
}

/** systemctl answers here (there is a systemd to talk to). */
export async function systemctlWorks(systemctl: string, env?: NodeJS.ProcessEnv): Promise<boolean> {
  return (await run(systemctl, ['show', '-p', 'Version'], env === undefined ? {} : { env })).ok;
}

/** Every service of the product that cannot be resolved, each with the reason. Empty: all resolve. */
export async function unresolvableServices(product: ProductConfig, opts: ResolveOptions = {}): Promise<ServiceProblem[]> {
  const problems: ServiceProblem[] = [];
  const systemctl = opts.systemctlPath ?? 'systemctl';
  if (product.services.length > 0) {
    if (await systemctlWorks(systemctl, opts.env)) {
      for (const unit of product.services) {
        try {
          assertUnitName(unit);
        } catch (error) {
          problems.push({ product: product.name, unit, message: isOtaError(error) ? error.message : String(error) });
          continue;
        }
        const shown = await run(systemctl, ['show', '-p', 'LoadState', '--value', unit], opts);
        const state = shown.stdout.trim();
        if (!shown.ok || state !== 'loaded') {
          problems.push({
            product: product.name,
            unit,
            message: `product ${product.name}: systemd unit ${unit} is not loadable (LoadState=${state || 'unknown'}${shown.stderr.trim() ? `: ${shown.stderr.trim()}` : ''}); check the name in products[].services or install the unit`,
          });
        }
      }
      return problems;
    }
    if (product.processUnits.length === 0) {
      for (const unit of product.services) {
        problems.push({
          product: product.name,
          unit,
          message: `product ${product.name}: service ${unit} cannot be managed: ${systemctl} does not work on this host and no processUnits are defined`,
        });
      }
      return problems;
    }
  }
  for (const u of product.processUnits) {
    const program = u.command[0] as string;
    const pathVar = u.env.PATH ?? process.env.PATH ?? '/usr/bin:/bin';
    if (!(await findProgram(program, pathVar, u.cwd))) {
      problems.push({
        product: product.name,
        unit: u.name,
        message: `product ${product.name}: process unit ${u.name} runs ${program}, which is not an executable file${program.includes('/') ? '' : ` on PATH (${pathVar})`}`,
      });
    }
  }
  return problems;
}
