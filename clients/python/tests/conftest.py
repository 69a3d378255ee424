"""Fixtures for the integration tests: a real Flotilla cluster named by environment variables.

packages/devkit/src/python-client.test.ts starts one (nats-server, head, worker), deploys the models
these tests call, and runs pytest with FLOTILLA_TEST_NATS, FLOTILLA_TEST_CLUSTER and
FLOTILLA_TEST_EXPECTED (a JSON file of inputs and the outputs onnxruntime computed for them).
Without them only the tests that need no cluster run.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict

import pytest

NATS = os.environ.get("FLOTILLA_TEST_NATS")
CLUSTER = os.environ.get("FLOTILLA_TEST_CLUSTER", "default")
EXPECTED = os.environ.get("FLOTILLA_TEST_EXPECTED")
REPORT = os.environ.get("FLOTILLA_TEST_REPORT")

needs_cluster = pytest.mark.skipif(not NATS, reason="FLOTILLA_TEST_NATS is not set (run from python-client.test.ts)")

_figures: Dict[str, Any] = {}


@pytest.fixture(scope="session")
def expected() -> Dict[str, Any]:
    assert EXPECTED, "FLOTILLA_TEST_EXPECTED is not set"
    with open(EXPECTED) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def figures() -> Dict[str, Any]:
    """Measured figures; written to FLOTILLA_TEST_REPORT (JSON) at the end of the session."""
    return _figures


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    if REPORT:
        with open(REPORT, "w") as f:
            json.dump(_figures, f)
