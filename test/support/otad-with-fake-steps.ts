/**
 * Test-only wiring: a real otad process whose steps are the fakes of fake-steps.ts, configured by
 * the JSON in OTA_TEST_FAKE_STEPS. With OTA_TEST_CHECK_ON_START=1 it sends CHECK_NOW to every idle
 * product once started. With OTA_TEST_UPDATE_NOW_ON_OFFER=1 it answers every offer with UPDATE_NOW
 * (as a robot's app would). With OTA_TEST_INTERFACES=1 it starts the real interfaces too.
 * Run: node --import tsx test/support/otad-with-fake-steps.ts --config FILE
 */
import { startOtad } from '../../src/daemon/main.js';
import { defaultInterfaces } from '../../src/api/interfaces.js';
import { fakeStepProvider, type FakeStepsSpec } from './fake-steps.js';

const args = process.argv.slice(2);
const configIndex = args.indexOf('--config');
const configPath = configIndex >= 0 ? args[configIndex + 1] : undefined;
const spec = JSON.parse(process.env.OTA_TEST_FAKE_STEPS ?? '{}') as FakeStepsSpec;

const running = await startOtad({
  ...(configPath ? { configPath } : {}),
  stepProvider: fakeStepProvider(spec),
  ...(process.env.OTA_TEST_INTERFACES === '1' ? { startInterfaces: defaultInterfaces } : {}),
  handleSignals: true,
});

if (process.env.OTA_TEST_CHECK_ON_START === '1') {
  for (const p of running.daemon.status().products) {
    if (p.state === 'idle') await running.daemon.dispatch({ product: p.product, type: 'CHECK_NOW', source: 'test' });
  }
}

if (process.env.OTA_TEST_UPDATE_NOW_ON_OFFER === '1') {
  running.daemon.bus.subscribe('transition', async (t) => {
    if (t.to === 'awaitingChoice') await running.daemon.dispatch({ product: t.product, type: 'UPDATE_NOW', source: 'test' }).catch(() => {});
  });
}
