/**
 * The step provider used when no real implementation of a step is wired: every step fails with
 * STEP_NOT_CONFIGURED, so otad reports honestly instead of pretending to update.
 */
import { STEP_NAMES, type Steps } from '../../machines/types.js';
import { OtaError } from '../core/errors.js';
import type { StepProvider } from '../daemon/step-provider.js';

export function notConfiguredSteps(): Steps {
  const steps: Record<string, () => Promise<never>> = {};
  for (const name of STEP_NAMES) {
    steps[name] = async () => {
      throw new OtaError('STEP_NOT_CONFIGURED', `the '${name}' step has no implementation in this build of otad`);
    };
  }
  return steps as unknown as Steps;
}

export const notConfiguredStepProvider: StepProvider = {
  real: false,
  steps: () => notConfiguredSteps(),
  journalVerdict: async () => 'none',
};
