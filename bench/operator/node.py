"""Benchmark on the real one-node cluster: `kubectl apply` -> first recorded frame and -> finished,
and how many 720p30 recordings the node runs at once with frame fidelity >= 98%.

    python3 bench/operator/node.py [--runs 5] [--seconds 10] [--concurrent 3]

Needs what `bash scripts/test.sh` provisions (node binaries, the recorder image tarball); starts
the cluster with tests/node/cluster.sh unless it already runs (or KUBECONFIG names another one)
and stops it again if it started it. Installs charts/webrecord with `helm` into a restricted
namespace, serves bench/recorder/pages/frames.html from a pod, and stores videos in a moto S3
endpoint on this machine's node address.

How the times are taken: the page paints the milliseconds since `?t0=` (the moment of the apply)
as a barcode in every frame (bench/recorder/recbench/analysis.py decodes it), so the first
decodable frame of the finished video says when the first page frame was captured, on the same
clock. "finished" is when `.status.phase` was first seen `finished` (polled every 0.2 s).

Baseline in the same run: a bare pod (same image, same page, same duration, no operator, no
upload) running `webrecord record`, writing its video to a hostPath: the cost of a pod start and
a recording on this node without webrecord's control path.

Standby pods (`--standby-runs`, default = --runs): after the cold runs the release is upgraded
to `operator.standbyPods=1`; each run waits until a standby pod is ready, then applies the same
WebRecording, which claims it (checked: `.status.podName` is the standby pod's). The idle
standby pod's cost is read from its pod cgroup on the node (cgroup v1, cgroupfs driver:
cpuacct.usage over 20 s, memory.usage_in_bytes and memory.stat rss) while nothing claims it.

Concurrency: N WebRecordings of 20 s at 1280x720 applied at once; the node's CPU (its pods'
requests) decides how many recorder pods run at once, the rest stay Pending and start when one
ends. Reported: the most that recorded at once, the worst frame fidelity among them, and that
none failed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench" / "recorder"))

import yaml  # noqa: E402
from delivery.moto_server import start_moto, stop_process  # noqa: E402
from node.cluster_ctl import NodeCluster  # noqa: E402
from node.flows import (  # noqa: E402
    BUCKET, CHART, Kube, chart_values, hardened, host_for_pods, page_server_manifests,
    pull_policy, s3_client,
)
from recbench.analysis import analyse_barcode_video  # noqa: E402

PAGES_DIR = ROOT / "bench" / "recorder" / "pages"
FIDELITY_TARGET = 0.98
RELEASE = "wr-bench"  # not the tests' "wr": cluster-scoped names derive from it
STANDBY = "webrecord.io/standby=true"


def now_ms() -> int:
    return int(time.time() * 1000)


def poll(check: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")


class Bench:
    def __init__(self, cluster: NodeCluster, helm: str, s3: str) -> None:
        self.cluster, self.helm, self.s3 = cluster, helm, s3
        self.ns = cluster.create_namespace("wr-bench")
        self.kube = Kube(cluster, self.ns)
        self.workdir = Path(tempfile.mkdtemp(prefix="wr-node-bench-"))

    def install(self) -> None:
        values = chart_values(self.cluster, self.s3, "bench-callback", "bench-secret")
        values["operator"]["maxConcurrent"] = 0  # the node's capacity decides, not a count
        path = self.workdir / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        subprocess.run([self.helm, "install", RELEASE, str(CHART), "-n", self.ns, "-f", str(path),
                        "--wait", "--timeout", "8m"], check=True, env=self.cluster.env,
                       capture_output=True, timeout=600)
        pages = {"frames.html": (PAGES_DIR / "frames.html").read_text()}
        self.kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(
            page_server_manifests(self.cluster.image, pull_policy(self.cluster), pages)))
        self.kube.kubectl("wait", "--for=condition=Ready", "pod/pages", "--timeout=180s", timeout=200)
        self.page = f"http://pages.{self.ns}.svc:8000/frames.html"

    def record(self, name: str, seconds: float, width: int = 1280, height: int = 720) -> dict[str, Any]:
        """One WebRecording from apply to finished; returns its timings and fidelity."""
        t0 = now_ms()
        self.kube.apply({"apiVersion": "webrecord.io/v1alpha1", "kind": "WebRecording",
                         "metadata": {"name": name},
                         "spec": {"recordUrl": f"{self.page}?t0={t0}", "width": width, "height": height,
                                  "maxDurationLimit": int(seconds), "storageType": "cos",
                                  "output": {"cos": {"bucket": BUCKET, "region": "us-east-1",
                                                     "targetDir": name}}}})
        status = poll(lambda: (s := self.kube.status(name)).get("phase") == "finished" and s,
                      600, f"{name} to finish")
        finished_s = (now_ms() - t0) / 1000
        return {**self.analyse(name, t0, status), "finished_s": finished_s}

    def enable_standby(self, pods: int) -> None:
        subprocess.run([self.helm, "upgrade", RELEASE, str(CHART), "-n", self.ns, "--reuse-values",
                        "--set", f"operator.standbyPods={pods}", "--wait", "--timeout", "5m"],
                       check=True, env=self.cluster.env, capture_output=True, timeout=400)

    def ready_standby(self, timeout: float = 300) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            pods = json.loads(self.kube.kubectl("get", "pods", "-l", STANDBY, "-o", "json").stdout)["items"]
            return next((p for p in pods if not p["metadata"].get("deletionTimestamp") and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions", []))), None)
        return poll(ready, timeout, "a ready standby pod")

    def record_standby(self, name: str, seconds: float) -> dict[str, Any]:
        pod = self.ready_standby()["metadata"]["name"]
        time.sleep(2)  # settled: the pool's replacement of the previous claim is not starting
        row = self.record(name, seconds)
        row["claimed"] = self.kube.status(name).get("podName") == pod
        return row

    def idle_standby_cost(self, seconds: float = 20) -> dict[str, Any]:
        """CPU (cores) and memory of an idle standby pod, from its cgroup on this node."""
        uid = self.ready_standby()["metadata"]["uid"]
        time.sleep(10)  # past the start-up
        [cpu] = glob.glob(f"/sys/fs/cgroup/cpuacct/kubepods/**/pod{uid}/cpuacct.usage", recursive=True)
        [mem] = glob.glob(f"/sys/fs/cgroup/memory/kubepods/**/pod{uid}", recursive=True)
        t0, u0 = time.monotonic(), int(Path(cpu).read_text())
        time.sleep(seconds)
        cores = (int(Path(cpu).read_text()) - u0) / 1e9 / (time.monotonic() - t0)
        stat = dict(line.split() for line in Path(mem, "memory.stat").read_text().splitlines())
        return {"cores": cores, "usage_mib": int(Path(mem, "memory.usage_in_bytes").read_text()) / 2**20,
                "rss_mib": int(stat["total_rss"]) / 2**20}

    def analyse(self, name: str, t0: int, status: dict[str, Any]) -> dict[str, Any]:
        error = status.get("result", {}).get("errorCode")
        if error:
            return {"error": error, "first_frame_s": None, "fidelity": None}
        [video] = status["result"]["videos"]
        key = next(o["Key"] for o in s3_client(self.s3).list_objects_v2(
            Bucket=BUCKET, Prefix=f"{name}/")["Contents"] if o["Key"].endswith(".mp4"))
        path = self.workdir / f"{name}.mp4"
        s3_client(self.s3).download_file(BUCKET, key, str(path))
        fid, _codes = analyse_barcode_video(path, 30.0)
        first = fid.first_clock_ms / 1000 if fid.first_clock_ms is not None else None
        return {"error": None, "first_frame_s": first, "fidelity": fid.fidelity,
                "start": status.get("startTime"), "stop": status.get("stopTime"),
                "size": video["fileSize"]}

    def bare(self, name: str, seconds: float) -> dict[str, Any]:
        """The baseline: the same recording in a bare pod, video to a hostPath (default ns)."""
        out = self.workdir / name
        out.mkdir()
        os.chown(out, 1000, 1000)
        t0 = now_ms()
        container = hardened({
            "name": "rec", "image": self.cluster.image, "imagePullPolicy": pull_policy(self.cluster),
            "command": ["webrecord"],
            "args": ["record", f"{self.page}?t0={t0}", "--width", "1280", "--height", "720",
                     "--duration", str(int(seconds)), "-q", "-o", "/out/video.mp4"],
            "env": [{"name": n, "value": "/tmp"} for n in ("HOME", "XDG_RUNTIME_DIR", "TMPDIR")],
            "volumeMounts": [{"name": "out", "mountPath": "/out"}, {"name": "tmp", "mountPath": "/tmp"},
                             {"name": "shm", "mountPath": "/dev/shm"}]})
        # As the chart runs recorders: Chromium's own sandbox under the chart's seccomp profile.
        container["securityContext"]["seccompProfile"] = {
            "type": "Localhost", "localhostProfile": "webrecord/chromium.json"}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": self.baseline_ns},
               "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                        "containers": [container],
                        "volumes": [{"name": "out", "hostPath": {"path": str(out), "type": "Directory"}},
                                    {"name": "tmp", "emptyDir": {}},
                                    {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "512Mi"}}]}}
        self.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(pod))
        poll(lambda: self.cluster.kubectl("-n", self.baseline_ns, "get", "pod", name, "-o",
                                          "jsonpath={.status.phase}").stdout in ("Succeeded", "Failed"),
             600, f"bare pod {name}")
        finished_s = (now_ms() - t0) / 1000
        if not (out / "video.mp4").exists():  # a row that says so, not the end of the run
            log = self.cluster.kubectl("-n", self.baseline_ns, "logs", name, "--tail=20",
                                       check=False).stdout
            return {"error": f"bare pod {name}: no video; {log.strip()[-600:]}",
                    "first_frame_s": None, "finished_s": finished_s, "fidelity": None}
        fid, _codes = analyse_barcode_video(out / "video.mp4", 30.0)
        return {"first_frame_s": fid.first_clock_ms / 1000 if fid.first_clock_ms is not None else None,
                "finished_s": finished_s, "fidelity": fid.fidelity}

    def concurrency(self, count: int, seconds: float) -> dict[str, Any]:
        names = [f"conc-{i}" for i in range(count)]
        t0 = now_ms()
        for name in names:
            self.kube.apply({"apiVersion": "webrecord.io/v1alpha1", "kind": "WebRecording",
                             "metadata": {"name": name},
                             "spec": {"recordUrl": f"{self.page}?t0={t0}", "width": 1280, "height": 720,
                                      "maxDurationLimit": int(seconds), "storageType": "cos",
                                      "output": {"cos": {"bucket": BUCKET, "region": "us-east-1",
                                                         "targetDir": name}}}})
        pending_max = 0
        intervals: dict[str, list[float]] = {}
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            pods = json.loads(self.kube.kubectl("get", "pods", "-l", "app.kubernetes.io/component=recorder",
                                                "-o", "json").stdout)["items"]
            pending_max = max(pending_max, sum(p["status"].get("phase") == "Pending" for p in pods))
            statuses = {n: self.kube.status(n) for n in names}
            for n, s in statuses.items():
                if s.get("phase") in ("recording", "paused"):
                    intervals.setdefault(n, [time.time(), time.time()])[1] = time.time()
            if all(s.get("phase") == "finished" for s in statuses.values()):
                break
            time.sleep(0.5)
        results = {n: self.analyse(n, t0, self.kube.status(n)) for n in names}
        at_once = max_overlap(list(intervals.values()))
        return {"at_once": at_once, "pending_max": pending_max,
                "failed": sorted(n for n, r in results.items() if r["error"]),
                "fidelity": sorted(r["fidelity"] for r in results.values() if r["fidelity"] is not None)}


def max_overlap(intervals: list[list[float]]) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


def median(values: list[float | None]) -> float | None:
    real = [v for v in values if v is not None]
    return statistics.median(real) if real else None


def fmt(v: float | None, pattern: str = "{:.2f}") -> str:
    return "n/a" if v is None else pattern.format(v)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrent", type=int, default=3,
                        help="720p30 recordings applied at once (0: skip)")
    parser.add_argument("--standby-runs", type=int, help="runs with a standby pod (default --runs)")
    args = parser.parse_args()
    helm = subprocess.run(["bash", str(ROOT / "tests" / "operator" / "helm.sh")], check=True,
                          capture_output=True, text=True).stdout.strip()
    with NodeCluster.from_environment() as cluster:
        proc, s3 = start_moto(host=host_for_pods(cluster))
        bench: Bench | None = None
        try:
            s3_client(s3).create_bucket(Bucket=BUCKET)
            bench = Bench(cluster, helm, s3)
            bench.baseline_ns = f"wr-bare-{uuid.uuid4().hex[:6]}"
            cluster.kubectl("create", "namespace", bench.baseline_ns)
            bench.install()
            runs = [bench.record(f"lat-{i}", args.seconds) for i in range(args.runs)]
            bench.enable_standby(1)
            warm = [bench.record_standby(f"warm-{i}", args.seconds)
                    for i in range(args.runs if args.standby_runs is None else args.standby_runs)]
            idle = bench.idle_standby_cost()
            bench.enable_standby(0)  # the concurrency below has the node to itself
            bare = [bench.bare(f"bare-{i}", args.seconds) for i in range(args.runs)]
            conc = bench.concurrency(args.concurrent, 20) if args.concurrent else None
        finally:
            stop_process(proc)
            # The release's cluster-scoped objects (ClusterRole, binding) outlive its namespace.
            if bench is not None:
                # While the operator still runs: its finalizers would hold the namespace forever.
                cluster.kubectl("-n", bench.ns, "delete", "webrecordings", "--all", "--wait=true",
                                "--timeout=120s", check=False, timeout=150)
                subprocess.run([helm, "uninstall", RELEASE, "-n", bench.ns, "--wait"], check=False,
                               capture_output=True, env=cluster.env, timeout=300)
            for ns in (getattr(bench, "ns", None), getattr(bench, "baseline_ns", None)):
                if ns:
                    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)

    first, first_bare = median([r["first_frame_s"] for r in runs]), median([r["first_frame_s"] for r in bare])
    done, done_bare = median([r["finished_s"] for r in runs]), median([r["finished_s"] for r in bare])
    ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "n/a"  # noqa: E731
    print(f"\n## bench/operator/node.py: {args.runs} runs of {args.seconds:g} s at 1280x720, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}\n")
    print("| measure | webrecord (operator) | baseline (bare pod) | ratio |")
    print("|---|---|---|---|")
    print(f"| kubectl apply -> first recorded frame, median s | {fmt(first)} | {fmt(first_bare)} | {ratio(first, first_bare)} |")
    print(f"|   min / max s | {fmt(min_of(runs, 'first_frame_s'))} / {fmt(max_of(runs, 'first_frame_s'))} "
          f"| {fmt(min_of(bare, 'first_frame_s'))} / {fmt(max_of(bare, 'first_frame_s'))} | |")
    print(f"| kubectl apply -> finished, median s | {fmt(done)} | {fmt(done_bare)} | {ratio(done, done_bare)} |")
    print(f"| frame fidelity, min of runs | {fmt(min_of(runs, 'fidelity'), '{:.2%}')} "
          f"| {fmt(min_of(bare, 'fidelity'), '{:.2%}')} | |")
    warm_first = median([r["first_frame_s"] for r in warm])
    print(f"| kubectl apply -> first recorded frame, standby pod, median s (cold operator beside) "
          f"| {fmt(warm_first)} | {fmt(first)} (cold) | {ratio(warm_first, first)} |")
    print(f"|   min / max s; claimed / runs | {fmt(min_of(warm, 'first_frame_s'))} / "
          f"{fmt(max_of(warm, 'first_frame_s'))}; {sum(r['claimed'] for r in warm)}/{len(warm)} | | |")
    print(f"|   kubectl apply -> finished, median s | {fmt(median([r['finished_s'] for r in warm]))} "
          f"| | |")
    each = lambda rows: ", ".join(fmt(r["fidelity"], "{:.2%}") for r in rows)  # noqa: E731
    print(f"|   frame fidelity of each run, standby / cold | {each(warm)} | {each(runs)} (cold) | |")
    print(f"| idle standby pod: CPU cores / memory usage MiB (RSS MiB) | {idle['cores']:.3f} / "
          f"{idle['usage_mib']:.0f} ({idle['rss_mib']:.0f}) | | |")
    errors = [r["error"] for r in runs + warm + bare if r.get("error")]
    if conc is None:
        if errors:
            print(f"\nerrors: {errors}")
        return 0
    ok = [f for f in conc["fidelity"] if f >= FIDELITY_TARGET]
    print(f"| {args.concurrent} x 720p30 applied at once: most recording at once | {conc['at_once']} | | |")
    print(f"|   frame fidelity of each (sorted) | {', '.join(f'{f:.2%}' for f in conc['fidelity'])} | | "
          f"{len(ok)}/{len(conc['fidelity'])} >= {FIDELITY_TARGET:.0%} |")
    print(f"|   most pods Pending at once (queued) / failed | {conc['pending_max']} / {len(conc['failed'])} | | |")
    errors += conc["failed"]
    if errors:
        print(f"\nerrors: {errors}")
    return 0


def min_of(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return min(values) if values else None


def max_of(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return max(values) if values else None


if __name__ == "__main__":
    raise SystemExit(main())
