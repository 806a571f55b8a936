"""Benchmark: the operator's memory over rounds of 1,000 finished WebRecordings.

    python bench/operator/memory.py [--count 1000] [--rounds 2] [--ttl 5]

Starts the test control plane (kube-apiserver + etcd, no kubelet), runs the operator as a
subprocess (standalone, one namespace) and, per round, creates COUNT WebRecordings with
`ttlSecondsAfterFinished: TTL`, plays the kubelet for each recorder pod (status Succeeded with
the recorder's final status as its termination message, as a real recorder ends) and waits
until the operator has finished every task, deleted its pod and Secret and, after the TTL, the
WebRecording itself. It prints the operator's RSS (from /proc) before the first task and after
each round, with ratios: memory that stays flat from round to round is memory that finished
tasks do not hold.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import ROOT, PodCounter, create_all, rss_mb  # noqa: E402

from controlplane.assets import find_assets  # noqa: E402
from controlplane.controlplane import ControlPlane  # noqa: E402


def finish_pods(cp: ControlPlane, namespace: str, names: list[str], workers: int) -> None:
    """Play the kubelet: every recorder pod ends Succeeded with its final status."""
    from kubernetes import client

    from webrecord.api.models import Phase, RecorderStatus

    api = cp.api_client()
    api.configuration.connection_pool_maxsize = workers
    core = client.CoreV1Api(api)

    def finish(name: str) -> None:
        now = int(time.time())
        final = RecorderStatus(task_id=name, status=Phase.FINISHED, create_time=now - 10,
                               start_time=now - 9, stop_time=now - 1, finish_time=now,
                               recorded_seconds=8.0)
        terminated = {"exitCode": 0, "reason": "Completed",
                      "message": final.model_dump_json(by_alias=True, exclude_none=True)}
        status = {"phase": "Succeeded", "containerStatuses": [{
            "name": "recorder", "image": "webrecord/recorder", "imageID": "", "ready": False,
            "restartCount": 0, "state": {"terminated": terminated}}]}
        core.patch_namespaced_pod_status(f"{name}-recorder", namespace, {"status": status},
                                         _preload_content=False)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(finish, names))
    api.close()


def count(cp: ControlPlane, namespace: str, kind: str) -> int:
    out = cp.kubectl("-n", namespace, "get", kind, "-o", "name", timeout=120).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def wait_gone(cp: ControlPlane, namespace: str, timeout: float) -> float:
    """Seconds until no WebRecording, recorder pod or token Secret is left."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        left = {kind: count(cp, namespace, kind) for kind in ("webrecordings", "pods", "secrets")}
        if not any(left.values()):
            return time.monotonic() - start
        time.sleep(2)
    raise SystemExit(f"still there after {timeout:g} s: {left}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ttl", type=int, default=5, help="spec.ttlSecondsAfterFinished")
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=1200)
    args = parser.parse_args()
    n = args.count

    rows: list[tuple[str, float, float, float]] = []
    with ControlPlane(find_assets(), controller_manager=False) as cp:
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        time.sleep(2)
        ns = cp.create_namespace("bench-mem")
        log_path = Path(cp.workdir) / "operator.log"
        env = {**cp.env, "WEBRECORD_OPERATOR_START_DEADLINE_S": "3600",
               "WEBRECORD_OPERATOR_POD_LOCAL_OUTPUT": "true", "WEBRECORD_LOG_LEVEL": "WARNING"}
        with open(log_path, "wb") as log:
            op = subprocess.Popen(
                [sys.executable, "-m", "webrecord.controller", "operator", "--standalone", "-n", ns],
                env=env, stdout=log, stderr=log, start_new_session=True)
        try:
            time.sleep(5)
            idle, _ = rss_mb(op.pid)
            for r in range(args.rounds):
                names = [f"r{r}-{i}" for i in range(n)]
                counter = PodCounter(cp, ns, "app.kubernetes.io/component=recorder")
                started = time.monotonic()
                create_all(cp, ns, [{
                    "apiVersion": "webrecord.io/v1alpha1", "kind": "WebRecording",
                    "metadata": {"name": name},
                    "spec": {"recordUrl": f"https://example.test/{name}",
                             "ttlSecondsAfterFinished": args.ttl},
                } for name in names], args.workers)
                counter.wait(n, args.timeout)
                counter.stop()
                finish_pods(cp, ns, names, args.workers)
                wait_gone(cp, ns, args.timeout)
                took = time.monotonic() - started
                time.sleep(5)
                rss, peak = rss_mb(op.pid)
                rows.append((f"after {(r + 1) * n} finished and expired", rss, peak, took))
                print(f"round {r + 1}: RSS {rss:.0f} MiB (peak {peak:.0f}), {took:.0f} s",
                      file=sys.stderr, flush=True)
        finally:
            op.send_signal(signal.SIGINT)
            try:
                op.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(op.pid, signal.SIGKILL)

    print(f"\n| operator ({n} WebRecordings per round, TTL {args.ttl} s) | RSS | vs idle | "
          "vs round 1 | peak so far | round took |\n|---|---|---|---|---|---|")
    print(f"| idle, before any task | {idle:.0f} MiB | 1.00 | | | |")
    first = rows[0][1] if rows else idle
    for name, rss, peak, took in rows:
        print(f"| {name} | {rss:.0f} MiB | {rss / idle:.2f} | {rss / first:.2f} | {peak:.0f} MiB "
              f"| {took:.0f} s |")
    json.dump({"count": n, "idle_mb": idle,
               "rounds": [{"rss_mb": r, "peak_mb": p, "took_s": t} for _, r, p, t in rows]},
              sys.stderr)
    sys.stderr.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
