"""Benchmark: 1,000 WebRecordings created at once against a real kube-apiserver.

    python bench/operator/run.py [--count 1000] [--workers 32]

Starts the test control plane (tests/controlplane: kube-apiserver + etcd built from Go modules),
installs the CRDs, runs the operator as a subprocess (standalone, one namespace), then creates
COUNT WebRecordings from a thread pool and measures:

- the time until every recorder pod exists (seen through a pod watch) and until every status
  names its pod;
- the operator's memory (RSS from /proc, and its peak);
- API requests per recording, from the apiserver's `apiserver_request_total` counters before and
  after, minus the benchmark's own requests, broken down by verb and resource;
- a baseline in the same run: the benchmark itself creating COUNT bare pods directly.

Prints a Markdown table. Nothing runs a pod (there is no kubelet): this measures the control
path, which is what the operator adds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from controlplane.assets import find_assets  # noqa: E402
from controlplane.controlplane import ControlPlane  # noqa: E402

_METRIC = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$')


def request_counts(cp: ControlPlane) -> Counter[tuple[str, str, str]]:
    """apiserver_request_total summed by (verb, resource, subresource)."""
    text = cp.kubectl("get", "--raw", "/metrics", timeout=60).stdout
    counts: Counter[tuple[str, str, str]] = Counter()
    for line in text.splitlines():
        match = _METRIC.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        key = (labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
        counts[key] += int(float(match["value"]))
    return counts


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    kb = lambda name: int(fields[name].split()[0])  # noqa: E731
    return kb("VmRSS") / 1024, kb("VmHWM") / 1024


class PodCounter:
    """One watch on the namespace's pods: counts distinct pod names as they appear."""

    def __init__(self, cp: ControlPlane, namespace: str, selector: str | None) -> None:
        from kubernetes import client, watch

        self.seen: set[str] = set()
        self.done = threading.Event()
        self.target = 0
        self.finished_at = 0.0
        self._api = cp.api_client()
        self._core = client.CoreV1Api(self._api)
        self._watch = watch.Watch()
        self._ns, self._selector = namespace, selector
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        kwargs = {"label_selector": self._selector} if self._selector else {}
        try:
            for ev in self._watch.stream(self._core.list_namespaced_pod, self._ns,
                                         timeout_seconds=600, **kwargs):
                if ev["type"] == "ADDED":
                    self.seen.add(ev["object"].metadata.name)
                    if self.target and len(self.seen) >= self.target and not self.done.is_set():
                        self.finished_at = time.monotonic()
                        self.done.set()
        except Exception:  # noqa: BLE001 - the watch ends when stop() closes it
            pass

    def wait(self, target: int, timeout: float) -> float:
        self.target = target
        if len(self.seen) >= target and not self.done.is_set():
            self.finished_at = time.monotonic()
            self.done.set()
        if not self.done.wait(timeout):
            raise SystemExit(f"only {len(self.seen)}/{target} pods after {timeout:g} s")
        return self.finished_at

    def stop(self) -> None:
        self._watch.stop()
        self._api.close()


def create_all(cp: ControlPlane, namespace: str, manifests: list[dict], workers: int) -> float:
    """POST every manifest from a pool of threads; returns the seconds it took."""
    from kubernetes import client

    api = cp.api_client()
    api.configuration.connection_pool_maxsize = workers
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)

    def create(manifest: dict) -> None:
        if manifest["kind"] == "Pod":
            core.create_namespaced_pod(namespace, manifest, _preload_content=False)
        else:
            custom.create_namespaced_custom_object("webrecord.io", "v1alpha1", namespace,
                                                   "webrecordings", manifest, _preload_content=False)

    start = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(create, manifests))
    api.close()
    return time.monotonic() - start


def wait_statuses(cp: ControlPlane, namespace: str, count: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = cp.kubectl("-n", namespace, "get", "webrecordings", "-o",
                         "jsonpath={range .items[*]}{.status.podName}{'\\n'}{end}", timeout=120).stdout
        if sum(1 for line in out.splitlines() if line.strip()) >= count:
            return time.monotonic()
        time.sleep(1)
    raise SystemExit("statuses did not all name their pod in time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=32, help="threads creating resources")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    n = args.count

    with ControlPlane(find_assets(), controller_manager=False) as cp:
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        time.sleep(2)
        base_ns, op_ns = cp.create_namespace("bench-pods"), cp.create_namespace("bench-wrec")

        # Baseline: the benchmark creates bare pods itself.
        pod = lambda i: {"apiVersion": "v1", "kind": "Pod",  # noqa: E731
                         "metadata": {"name": f"bare-{i}"},
                         "spec": {"containers": [{"name": "c", "image": "x"}]}}
        counter = PodCounter(cp, base_ns, None)
        started = time.monotonic()
        create_all(cp, base_ns, [pod(i) for i in range(n)], args.workers)
        baseline_s = counter.wait(n, args.timeout) - started
        counter.stop()

        log_path = Path(cp.workdir) / "operator.log"
        env = {**cp.env, "WEBRECORD_OPERATOR_START_DEADLINE_S": "3600", "WEBRECORD_LOG_LEVEL": "WARNING"}
        with open(log_path, "wb") as log:
            op = subprocess.Popen(
                [sys.executable, "-m", "webrecord.controller", "operator", "--standalone", "-n", op_ns],
                env=env, stdout=log, stderr=log, start_new_session=True)
        try:
            time.sleep(5)
            idle_rss, _ = rss_mb(op.pid)
            counter = PodCounter(cp, op_ns, "app.kubernetes.io/component=recorder")
            before = request_counts(cp)
            manifest = lambda i: {"apiVersion": "webrecord.io/v1alpha1", "kind": "WebRecording",  # noqa: E731
                                  "metadata": {"name": f"rec-{i}"},
                                  "spec": {"recordUrl": f"https://example.test/{i}"}}
            started = time.monotonic()
            create_s = create_all(cp, op_ns, [manifest(i) for i in range(n)], args.workers)
            pods_s = counter.wait(n, args.timeout) - started
            status_s = wait_statuses(cp, op_ns, n, args.timeout) - started
            time.sleep(5)  # let the last patches and events land
            after = request_counts(cp)
            rss, peak = rss_mb(op.pid)
            counter.stop()
        finally:
            op.send_signal(signal.SIGINT)
            try:
                op.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(op.pid, signal.SIGKILL)

    delta = after - before
    # The benchmark's own requests: its creates, the status polls (kubectl list) and /metrics.
    delta[("POST", "webrecordings", "")] -= n
    by_kind = sorted(((f"{verb} {res}{'/' + sub if sub else ''}", v) for (verb, res, sub), v in delta.items()
                      if v > 0 and res and not (verb == "LIST" and res == "webrecordings")), key=lambda kv: -kv[1])
    per_rec = sum(v for _, v in by_kind) / n

    rows = [
        ("WebRecordings created (benchmark POSTs, %d threads)" % args.workers, f"{create_s:.1f} s"),
        (f"all {n} recorder pods exist", f"{pods_s:.1f} s after the first create"),
        (f"all {n} statuses name their pod", f"{status_s:.1f} s"),
        (f"baseline: {n} bare pods created directly", f"{baseline_s:.1f} s"),
        ("operator RSS idle / after / peak", f"{idle_rss:.0f} / {rss:.0f} / {peak:.0f} MiB"),
        ("API requests per recording (operator)", f"{per_rec:.2f}"),
    ]
    print(f"\n| metric ({n} WebRecordings) | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print("\n| operator requests by verb and resource | total | per recording |\n|---|---|---|")
    for name, value in by_kind:
        print(f"| {name} | {value} | {value / n:.2f} |")
    json.dump({"count": n, "create_s": create_s, "pods_s": pods_s, "status_s": status_s,
               "baseline_s": baseline_s, "rss_mb": rss, "peak_mb": peak, "idle_mb": idle_rss,
               "requests_per_recording": per_rec, "by_kind": dict(by_kind)},
              sys.stderr)
    sys.stderr.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
