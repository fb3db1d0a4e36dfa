/**
 * Chooses the step implementations the daemon runs. Real steps are wired here as they exist;
 * until then the not-configured provider keeps otad honest.
 */
import type { StepProvider } from '../daemon/daemon.js';
import { notConfiguredStepProvider } from './not-configured.js';

export function defaultStepProvider(): StepProvider {
  return notConfiguredStepProvider;
}
