// Writes the suite's totals to .cache/test-counts.json so .ci/run can print `N passed, N failed`.
const { mkdirSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');

class CountReporter {
  constructor(globalConfig) {
    this.rootDir = globalConfig.rootDir;
  }
  onRunComplete(_contexts, results) {
    const dir = join(this.rootDir, '.cache');
    mkdirSync(dir, { recursive: true });
    const failed = results.numFailedTests + results.numRuntimeErrorTestSuites;
    writeFileSync(
      join(dir, 'test-counts.json'),
      JSON.stringify({ passed: results.numPassedTests, failed, suitesFailed: results.numFailedTestSuites }),
    );
  }
}
module.exports = CountReporter;
