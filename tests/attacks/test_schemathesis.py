"""Property-based fuzzing of the HTTP API from its own `/openapi.json` (schemathesis) against a
real `webrecord serve` on loopback: no generated request may get a response >= 500.

The recorder command is `true`: a Start the schema makes valid and the URL policy allows
queues a task whose "recorder" exits at once (RecorderLost), so no browser starts and no page
is fetched. Examples are bounded (WEBRECORD_SCHEMATHESIS_EXAMPLES, default 300: half valid, half invalid per operation) so the test
finishes in about a minute on two busy cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

pytestmark = pytest.mark.timeout(240)

EXAMPLES = int(os.environ.get("WEBRECORD_SCHEMATHESIS_EXAMPLES", "300"))


@pytest.fixture(scope="module")
def serve_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("schemathesis")
    port_file = base / "port"
    env = {
        **os.environ,
        "WEBRECORD_ADAPTER_RECORDER_COMMAND": json.dumps([shutil.which("true") or "/bin/true"]),
        "WEBRECORD_ADAPTER_URL_ALLOW_LOOPBACK": "false",
        "WEBRECORD_LOG_LEVEL": "WARNING",
    }
    log = open(base / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "webrecord.cli", "serve", "--no-auth", "--port", "0",
         "--port-file", str(port_file), "--state-dir", str(base / "state")],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert proc.poll() is None, (base / "serve.log").read_text()
            assert time.monotonic() < deadline, "webrecord serve did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        text = Path(base / "serve.log").read_text(errors="replace")
        assert "Traceback" not in text, text[-4000:]


def test_no_server_errors(serve_url: str) -> None:
    # Driven through hypothesis directly (the schemathesis pytest plugin is not needed).
    schema = schemathesis.openapi.from_url(f"{serve_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the OpenAPI document lists no operation"
    statuses: Counter[int] = Counter()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES // 2, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case: schemathesis.Case) -> None:
                response = case.call(base_url=serve_url, timeout=30)
                statuses[response.status_code] += 1
                assert response.status_code < 500, (response.status_code, response.text[:500])
                assert "Traceback" not in response.text
                case.validate_response(response, checks=[not_a_server_error])

            try:
                check()
            except Unsatisfiable:
                # An operation with no input (GET /healthz) has no invalid form to send.
                assert mode is GenerationMode.NEGATIVE, operation.label
    print("responses by status:", dict(sorted(statuses.items())))
    # The fuzzing reached the handlers: some requests were accepted, some refused.
    assert any(200 <= s < 300 for s in statuses) and any(400 <= s < 500 for s in statuses)
