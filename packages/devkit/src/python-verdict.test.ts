// pytestVerdict: what the Python-client tests read from pytest's output, and what they must not
// mistake for a verdict (an interpreter's exit-time warnings about a library's leftover tasks).
import { pytestVerdict } from './python.js';

const warnings = [
  'Task was destroyed but it is pending!',
  "task: <Task pending name='Task-17' coro=<Client._read_loop() running at nats/aio/client.py:2413>>",
  'RuntimeError: Event loop is closed',
  'PytestUnraisableExceptionWarning: Exception ignored in: <coroutine object Subscription._wait_for_msgs>',
].join('\n');

it.each<[string, string, { summary: string | undefined; notPassed: string[] }]>([
  ['all passed', '....  [100%]\n4 passed in 0.41s\n', { summary: '4 passed in 0.41s', notPassed: [] }],
  ['all passed, warnings after', `....  [100%]\n4 passed in 0.41s\n${warnings}\n`, { summary: '4 passed in 0.41s', notPassed: [] }],
  [
    'one skipped (-rs)',
    '...s [100%]\n=== short test summary info ===\nSKIPPED [1] tests/test_auth.py:27: not set\n3 passed, 1 skipped in 0.30s\n',
    { summary: '3 passed, 1 skipped in 0.30s', notPassed: ['SKIPPED [1] tests/test_auth.py:27: not set'] },
  ],
  [
    'one failed',
    '..F. [100%]\nFAILED tests/test_auth.py::test_x - assert 1 == 2\n1 failed, 3 passed in 0.50s\n',
    { summary: '1 failed, 3 passed in 0.50s', notPassed: ['FAILED tests/test_auth.py::test_x - assert 1 == 2'] },
  ],
  ['framed summary (no -q)', '==== 34 passed in 2.41s ====\n', { summary: '34 passed in 2.41s', notPassed: [] }],
  ['no summary', warnings, { summary: undefined, notPassed: [] }],
])('%s', (_what, output, verdict) => expect(pytestVerdict(output)).toEqual(verdict));
