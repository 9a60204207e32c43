import { defineConfig } from 'vitest/config';

// Integration and e2e tests need the built CLI and crypto worker (fresh-dist.ts rebuilds dist/ when
// a source is newer) and the database servers (global-setup.ts); unit tests need neither.
const needsBuildAndServers = ['test/helpers/fresh-dist.ts', 'test/helpers/global-setup.ts'];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration and e2e files each create their own databases; a few at a time keeps the 2-core machine responsive.
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default', './test/helpers/summary-reporter.ts'],
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      { extends: true, test: { name: 'integration', include: ['test/integration/**/*.test.ts'], globalSetup: needsBuildAndServers } },
      { extends: true, test: { name: 'e2e', include: ['test/e2e/**/*.test.ts'], globalSetup: needsBuildAndServers } },
    ],
  },
});
