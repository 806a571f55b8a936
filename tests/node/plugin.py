"""pytest plugin: a real one-node Kubernetes for the tests that need pods to run.

Fixture `node_cluster` (session): a `cluster_ctl.NodeCluster` with `.kubeconfig`, `.node_ip`,
`.image`, `.own_cluster`, `.env`, `.kubectl(...)`, `.namespace()` / `.create_namespace()`
(restricted Pod Security level), `.has_image(ref)`, `.pause_image`, `.busybox_image`.

Without `KUBECONFIG` it is this machine's own cluster (tests/node/cluster.sh); with `KUBECONFIG`
it is the user's cluster, never started or stopped (recorder image: `WEBRECORD_KIND_IMAGE`).

Life cycle of the own cluster:
- tests that use `node_cluster` (or carry the `node` marker) run after all others, so the
  cluster neither slows down nor outlives the rest of the suite;
- after collection provision.sh builds what is missing (minutes, once per machine) outside any
  test's timeout; the cluster starts before the first node test's timeout clock, and stops at
  the end of the session, on Ctrl-C, on SIGTERM and at interpreter exit; if pytest is killed
  outright, cluster.sh's watchdog stops it once this process is gone.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from . import cluster_ctl
from .cluster_ctl import NodeCluster, NodeClusterError


class _Session:
    """Provisions, starts and stops the cluster once per session. A failure is remembered and
    reported by each test that needs the cluster; the rest of the suite runs on."""

    def __init__(self) -> None:
        self.bin_dirs: list[Path] = []
        self.cluster: NodeCluster | None = None
        self.error: str | None = None
        self.owns = False
        self._previous_sigterm: Any = None

    def provision(self) -> None:
        if self.bin_dirs or self.error:
            return
        try:
            self.bin_dirs = cluster_ctl.provision()
        except Exception as exc:  # noqa: BLE001 - reported by every node test
            self.error = f"provisioning the node cluster failed: {exc}"

    def start(self) -> None:
        self.provision()
        if self.cluster or self.error:
            return
        if not os.environ.get("KUBECONFIG"):
            self.owns = True
            self._install_sigterm()
        try:
            self.cluster = cluster_ctl.start(self.bin_dirs)
        except Exception as exc:  # noqa: BLE001 - reported by every node test
            self.error = f"starting the node cluster failed: {exc}"
            self.stop()

    def get(self) -> NodeCluster:
        self.start()
        if self.error or self.cluster is None:
            raise NodeClusterError(self.error or "node cluster not started")
        return self.cluster

    def stop(self) -> None:
        if not self.owns:
            return
        self.owns = False
        try:
            cluster_ctl.stop()
        except Exception as exc:  # noqa: BLE001 - the watchdog still stops it
            sys.stderr.write(f"node cluster: down failed ({exc}); its watchdog stops it once this process ends\n")
        finally:
            self._restore_sigterm()

    # SIGTERM (e.g. `timeout` around the test command): stop the cluster, then die as asked.
    def _install_sigterm(self) -> None:
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.stop()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


_SESSION = _Session()
atexit.register(_SESSION.stop)


def _needs_node(item: pytest.Item) -> bool:
    return "node_cluster" in getattr(item, "fixturenames", ()) or item.get_closest_marker("node") is not None


@contextlib.contextmanager
def _terminal(config: pytest.Config) -> Iterator[None]:
    """The scripts' progress on the terminal instead of swallowed by capture."""
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        yield
        return
    with capture.global_and_fixture_disabled():
        yield


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Node tests last, otherwise in collected order."""
    items[:] = [item for item in items if not _needs_node(item)] + [item for item in items if _needs_node(item)]


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly or not any(_needs_node(item) for item in session.items):
        return
    with _terminal(session.config):
        _SESSION.provision()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    # tryfirst: before pytest-timeout's wrapper starts the test's clock.
    if _needs_node(item):
        with _terminal(item.config):
            _SESSION.start()
    yield


def pytest_sessionfinish(session: pytest.Session) -> None:
    with _terminal(session.config):
        _SESSION.stop()


@pytest.fixture(scope="session")
def node_cluster() -> Iterator[NodeCluster]:
    yield _SESSION.get()
    _SESSION.stop()
