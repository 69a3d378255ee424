// The layering, checked by `pnpm lint` (dependency-cruiser over the packages' sources; test files
// may also use the test kit and the sample models). docs/architecture.md states the same table.
//
//   protocol, sample-models  → nothing of ours
//   bus                      → protocol
//   head, worker, client     → protocol, bus (never each other)
//   gateway, jobs, loadgen   → client, bus, protocol
//   dashboard                → client, bus, protocol
//   local                    → head, worker, client, bus, protocol
//   cli, bench               → any product package (never the test kit)
//   devkit (the test kit)    → anything
const RUNTIME = 'packages/(?!devkit/)[^/]+/src/(?!.*\\.test\\.ts$)';

/** A package (its non-test sources) may import only itself and `allowed`. */
function only(pkg, allowed) {
  const ok = [pkg, ...allowed].join('|');
  return {
    name: `${pkg}-depends-only-on-${allowed.join('-') || 'itself'}`,
    comment: `${pkg} may import only ${allowed.join(', ') || 'nothing of ours'} (docs/architecture.md)`,
    severity: 'error',
    from: { path: `^packages/${pkg}/src/`, pathNot: '\\.test\\.ts$' },
    to: { path: '^packages/[^/]+/', pathNot: `^packages/(${ok})/` },
  };
}

module.exports = {
  forbidden: [
    {
      name: 'no-undeclared-or-unresolvable',
      comment: 'every import resolves: a package imports only what its package.json declares (pnpm links nothing else)',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
    {
      name: 'no-circular',
      comment: 'no import cycles, inside a package or between packages',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-runtime-on-test-kit',
      comment: 'product code never depends on the test kit (devkit); tests may',
      severity: 'error',
      from: { path: `^${RUNTIME}` },
      to: { path: '^packages/devkit/' },
    },
    {
      name: 'no-reaching-into-another-package',
      comment: 'import another package by its name (its index or ./internal), never by a path into its src/ or dist/',
      severity: 'error',
      from: { path: '^packages/([^/]+)/' },
      to: { path: '^packages/([^/]+)/src/', pathNot: '^packages/$1/' },
    },
    only('protocol', []),
    only('sample-models', []),
    only('bus', ['protocol']),
    only('head', ['protocol', 'bus']),
    only('worker', ['protocol', 'bus']),
    only('client', ['protocol', 'bus']),
    only('gateway', ['client', 'bus', 'protocol']),
    only('jobs', ['client', 'bus', 'protocol']),
    only('loadgen', ['client', 'bus', 'protocol']),
    only('dashboard', ['client', 'bus', 'protocol']),
    only('local', ['head', 'worker', 'client', 'bus', 'protocol']),
  ],
  options: {
    // Another package is imported by name and resolved the way Node resolves it (pnpm links it to
    // packages/<name>/dist): its built files are leaves, never cruised themselves.
    doNotFollow: { path: ['node_modules', '(^|/)dist/'] },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['main', 'types'],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
