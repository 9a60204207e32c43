/**
 * Adds one plain closing line, "Tests: N passed, N failed, N skipped", after vitest's own
 * summary, so tools that read a run's last lines see the counts without parsing vitest's format.
 */
import type { Reporter, TestModule, TestRunEndReason } from 'vitest/node';

export default class SummaryLineReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>, reason: TestRunEndReason): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const m of modules) {
      let tests = 0;
      for (const t of m.children.allTests()) {
        tests++;
        const state = t.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failed++;
        else skipped++;
      }
      // A file that failed before defining tests (import error, failing beforeAll) counts as a failure.
      if (tests === 0 && m.state() === 'failed') failed++;
    }
    failed += unhandledErrors.length;
    // A run that failed outside any test (e.g. global setup: a database unreachable under CI) is a failure.
    if (reason === 'failed' && failed === 0) failed = 1;
    process.stdout.write(`\nTests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
