/**
 * Test-only wiring: the real otad (real steps, real interfaces, as dist/src/cli/otad.js starts it)
 * whose wall clock can be moved to the install slot on demand, as the in-process scheduling tests
 * do with a ManualClock and Daemon.onTimer(): on SIGUSR2 the clock jumps to just past the earliest
 * scheduled install of any product and the daemon's deadlines fire. The monotonic clock is the
 * real one, so durations (the install window) stay real.
 * Run: node dist/test/support/otad-at-slot.js --config FILE
 */
import { performance } from 'node:perf_hooks';
import type { Clock } from '../../src/core/clock.js';
import { startOtad } from '../../src/daemon/main.js';
import { defaultInterfaces } from '../../src/api/interfaces.js';
import { defaultStepProvider } from '../../src/steps/provider.js';

const args = process.argv.slice(2);
const configIndex = args.indexOf('--config');
const configPath = configIndex >= 0 ? args[configIndex + 1] : undefined;

let offsetMs = 0;
const clock: Clock = {
  now: () => Date.now() + offsetMs,
  monotonic: () => performance.now(),
};

const running = await startOtad({
  ...(configPath ? { configPath } : {}),
  clock,
  stepProvider: defaultStepProvider(),
  startInterfaces: defaultInterfaces,
  handleSignals: true,
});

process.on('SIGUSR2', () => {
  const slots = running.daemon
    .status()
    .products.filter((p) => p.state === 'scheduled' && p.deadlines.scheduledAt !== null)
    .map((p) => p.deadlines.scheduledAt as number);
  if (slots.length === 0) {
    running.logging.logger.warn('test clock: no product is scheduled; the clock stays where it is');
    return;
  }
  const slot = Math.min(...slots);
  offsetMs = Math.max(offsetMs, slot + 1000 - Date.now());
  running.logging.logger.info('test clock moved to the install slot', { slot, now: clock.now() });
  running.daemon.onTimer();
});
