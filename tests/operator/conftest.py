"""Fixtures of the operator tests: CRDs on the real API server, the operator as a subprocess,
a loopback callback receiver, and small helpers to act as the kubelet."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelet import moto, pod_env  # noqa: F401 - fixtures of the end-to-end tests
from opkit import CRDS, CallbackReceiver, Kube, OperatorProcess, wait_for


@pytest.fixture(scope="session")
def crds_installed(control_plane: Any) -> Any:
    control_plane.kubectl("apply", "--server-side", "-f", str(CRDS))
    # Polled rather than `kubectl wait`, which errors out while .status.conditions is still unset.
    query = '{.status.conditions[?(@.type=="Established")].status}'
    for name in ("webrecordings.webrecord.io", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        wait_for(lambda: control_plane.kubectl("get", "crd", name, "-o", f"jsonpath={query}",
                                               check=False).stdout.strip() == "True",
                 60, f"CRD {name} to be established")
    return control_plane


@pytest.fixture
def kube(crds_installed: Any, k8s_namespace: str) -> Kube:
    return Kube(crds_installed, k8s_namespace)


# Short timeouts so failure paths finish within a test's budget.
FAST = {
    "WEBRECORD_OPERATOR_POLL_INTERVAL_S": "0.5",
    "WEBRECORD_OPERATOR_START_DEADLINE_S": "60",
    "WEBRECORD_OPERATOR_DELETE_WAIT_S": "20",
    "WEBRECORD_CALLBACK_ATTEMPTS": "3",
    "WEBRECORD_CALLBACK_BACKOFF_S": "0.1",
    # Most tests here make tasks without an output; the refusal has its own test.
    "WEBRECORD_OPERATOR_POD_LOCAL_OUTPUT": "true",
    # Finished WebRecordings stay to be looked at (some tests write finish times of 1970);
    # test_bounded_growth.py sets TTLs of its own.
    "WEBRECORD_OPERATOR_TTL_SECONDS_AFTER_FINISHED": "0",
}


@pytest.fixture
def start_operator(
    kube: Kube, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start operators in the test's namespace (standalone unless told); all stopped after."""
    started: list[OperatorProcess] = []

    def start(args: list[str] | None = None, kubeconfig: Path | None = None,
              **env: str) -> OperatorProcess:
        # The callback receiver is on loopback, which the egress policy refuses unless told.
        full = {**kube.cp.env, **FAST, "WEBRECORD_EGRESS_ALLOW_LOOPBACK": "true", **env,
                "WEBRECORD_LOG_LEVEL": "INFO"}
        if kubeconfig:
            full["KUBECONFIG"] = str(kubeconfig)
        op = OperatorProcess(full, args or ["--standalone", "--namespace", kube.ns],
                             tmp_path / f"operator-{len(started)}.log")
        started.append(op.start())
        return op

    yield start
    for op in started:
        op.stop()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        for op in started:
            sys.stderr.write(f"--- {op.log_path} ---\n{op.log()[-6000:]}\n")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def callback_receiver() -> Iterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    try:
        yield receiver
    finally:
        receiver.close()
