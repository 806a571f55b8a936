"""A real one-node Kubernetes (kubelet on containerd) for the tests that need pods to run.

`provision.sh` builds and caches the binaries and base images, `cluster.sh` starts and stops the
cluster, `plugin` holds the `node_cluster` fixture (registered from tests/conftest.py).
"""
