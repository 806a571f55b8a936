"""pytest plugin: the session's Kubernetes control plane and per-test namespaces.

Fixtures:
- `control_plane_assets` (session): Path of the directory with kube-apiserver, etcd, kubectl.
- `control_plane` (session): a started `ControlPlane` (see controlplane.py): `.kubeconfig`,
  `.server`, `.env`, `.kubectl(...)`, `.api_client()`, `.namespace()`, `.create_namespace()`,
  `.service_account_kubeconfig(ns, name)`, `.has_controller_manager`.
- `k8s_namespace` (function): a fresh namespace name, deleted after the test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .assets import find_assets
from .controlplane import ControlPlane

_FIXTURES = {"control_plane", "control_plane_assets", "k8s_namespace"}


def _needs_control_plane(item: pytest.Item) -> bool:
    return bool(_FIXTURES.intersection(getattr(item, "fixturenames", ()))) or (
        item.get_closest_marker("cluster") is not None
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Provision before the first test starts, so a first build (many minutes) is not charged to
    one test's timeout. A no-op when KUBEBUILDER_ASSETS is set or the cache is warm."""
    if session.config.option.collectonly or not any(_needs_control_plane(i) for i in session.items):
        return
    if os.environ.get("KUBEBUILDER_ASSETS"):
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    # Show provision.sh's progress on the terminal instead of swallowing it.
    context = capture.global_and_fixture_disabled() if capture else _null()
    with context:
        os.environ["KUBEBUILDER_ASSETS"] = str(find_assets())


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.fixture(scope="session")
def control_plane_assets() -> Path:
    return find_assets()


@pytest.fixture(scope="session")
def control_plane(control_plane_assets: Path) -> Iterator[ControlPlane]:
    """One control plane for the whole session; tests isolate by namespace."""
    with ControlPlane(control_plane_assets) as plane:
        yield plane


@pytest.fixture
def k8s_namespace(control_plane: ControlPlane) -> Iterator[str]:
    with control_plane.namespace() as name:
        yield name
