import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    // Integration tests spawn real processes and servers; two cores are the budget.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
    // dbus-next clients in test processes need usocket's util.isError on Node 24 (src/api/usocket-compat.ts).
    setupFiles: ['src/api/usocket-compat.ts'],
  },
});
