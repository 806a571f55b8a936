"""Finds the control-plane binaries: KUBEBUILDER_ASSETS (envtest layout) or provision.sh's cache."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

PROVISION_SCRIPT = Path(__file__).with_name("provision.sh")
REQUIRED = ("kube-apiserver", "etcd", "kubectl")


class AssetsError(RuntimeError):
    pass


def missing_binaries(directory: Path) -> list[str]:
    return [name for name in REQUIRED if not os.access(directory / name, os.X_OK)]


def find_assets(*, build: bool = True) -> Path:
    """The directory with kube-apiserver, etcd and kubectl.

    Honours KUBEBUILDER_ASSETS; otherwise runs provision.sh, which builds into the cache once
    (many minutes on a bare machine) and answers instantly afterwards. Its progress goes to our
    stderr so a long first build is visible.
    """
    configured = os.environ.get("KUBEBUILDER_ASSETS")
    if configured:
        directory = Path(configured)
        missing = missing_binaries(directory)
        if missing:
            raise AssetsError(
                f"KUBEBUILDER_ASSETS={configured}: missing executables {', '.join(missing)} "
                "(the envtest layout has kube-apiserver, etcd and kubectl side by side)"
            )
        return directory
    if not build:
        raise AssetsError("KUBEBUILDER_ASSETS is not set; run tests/controlplane/provision.sh")
    result = subprocess.run(
        ["bash", str(PROVISION_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        raise AssetsError(
            f"tests/controlplane/provision.sh failed with exit code {result.returncode}; "
            "its messages are above"
        )
    directory = Path(result.stdout.strip().splitlines()[-1])
    missing = missing_binaries(directory)
    if missing:
        raise AssetsError(f"provision.sh answered {directory}, which lacks {', '.join(missing)}")
    return directory
