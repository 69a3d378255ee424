// Lint rules every package follows (run by `pnpm lint` in CI). typescript-eslint's recommended
// set without type information (fast: the build type-checks), plus the house rules: no console
// in library code (the CLI and benchmarks print for people, on purpose), no floating promises
// written as bare expressions, no unused code.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/node_modules/**', '**/dist/**', '.cache/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/no-explicit-any': 'error',
      'no-console': 'error',
      eqeqeq: ['error', 'always'],
      'prefer-const': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // People read these: printing is the point.
    files: ['packages/cli/src/**/*.ts', 'packages/bench/src/**/*.ts', '**/*.test.ts'],
    rules: { 'no-console': 'off' },
  },
  {
    // Object stores open through @flotilla/bus's objectStores(): it switches the library's
    // SHA-256 from pure JS to node:crypto (25× faster on a model artifact).
    files: ['packages/*/src/**/*.ts'],
    ignores: ['**/*.test.ts', 'packages/bus/src/object-stores.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        { selector: "NewExpression[callee.name='Objm']", message: 'open object stores with objectStores() from @flotilla/bus' },
      ],
    },
  },
  {
    // Tests read JSON bodies and raw replies whose shape is what they assert.
    files: ['**/*.test.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    files: ['**/*.cjs'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: { module: 'writable', require: 'readonly', __dirname: 'readonly', process: 'readonly', Buffer: 'readonly' },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
