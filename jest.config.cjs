// One Jest setup for the whole workspace: @swc/jest compiles TypeScript to CommonJS (fast, no
// type-check: `pnpm build` runs tsc first), workspace imports resolve to sources, and the custom
// environment shares the host's typed-array classes with the test sandbox (see the file).
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: '<rootDir>/jest.environment.cjs',
  roots: ['<rootDir>/packages', '<rootDir>/deploy'],
  testMatch: ['**/*.test.ts'],
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
  transform: {
    '^.+\\.ts$': ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } }],
  },
  moduleNameMapper: {
    '^@flotilla/([a-z-]+)$': '<rootDir>/packages/$1/src/index.ts',
    '^@flotilla/([a-z-]+)/internal$': '<rootDir>/packages/$1/src/internal.ts',
    '^(\\.{1,2}/.*)\\.js$': '$1',
  },
  testTimeout: 60_000,
  reporters: ['default', ['<rootDir>/scripts/jest-count-reporter.cjs', {}]],
};
