"""The benchmark's table: one row per measure, recorder vs baseline, ratio, target, verdict."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from recbench.analysis import AvOffset, Fidelity
from recbench.runs import Run


@dataclass
class Row:
    section: str
    label: str
    recorder: object
    baseline: object
    fmt: str
    ratio: float | None
    target: str
    verdict: str
    note: str | None


def _num(x: object) -> float | None:
    if isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x):
        return float(x)
    return None


class Report:
    def __init__(self, quick: bool, durations: dict) -> None:
        self.quick = quick
        self.durations = durations
        self.rows: list[Row] = []
        self.runs: list[dict] = []
        self.errors: list[tuple[str, str]] = []
        self.started = time.time()
        self.load_start = os.getloadavg()
        self.recorder_code = _recorder_code()
        self.elapsed_s = 0.0

    # ---- collecting -------------------------------------------------------------------
    def ratio_row(self, section: str, label: str, recorder: object, baseline: object,
                  fmt: str = "{}", max_ratio: float | None = None, min_value: float | None = None,
                  max_value: float | None = None, note: str | None = None) -> None:
        r, b = _num(recorder), _num(baseline)
        ratio = r / b if r is not None and b not in (None, 0.0) else None
        target, verdict = "", "info"
        if max_ratio is not None:
            target = f"<= {max_ratio:g}x base"
            verdict = "n/a" if ratio is None else ("PASS" if ratio <= max_ratio else "FAIL")
        elif min_value is not None:
            target = ">= " + fmt.format(min_value)
            verdict = "n/a" if r is None else ("PASS" if r >= min_value else "FAIL")
        elif max_value is not None:
            target = "< " + fmt.format(max_value)
            verdict = "n/a" if r is None else ("PASS" if r < max_value else "FAIL")
        self.rows.append(Row(section, label, recorder, baseline, fmt, ratio, target, verdict, note))

    def add_run(self, run: Run, fid: Fidelity) -> None:
        self.runs.append({**_run_dict(run), "fidelity": {**fid.__dict__, "fidelity": fid.fidelity,
                                                        "fidelity_captured": fid.fidelity_captured}})

    def add_av(self, run: Run, av: AvOffset) -> None:
        self.runs.append({**_run_dict(run), "av": {**av.__dict__, "mean_ms": av.mean_ms,
                                                  "mean_abs_ms": av.mean_abs_ms,
                                                  "max_abs_ms": av.max_abs_ms}})

    def error(self, section: str, message: str) -> None:
        self.errors.append((section, message))

    # ---- output -----------------------------------------------------------------------
    def data(self) -> dict:
        return {"quick": self.quick, "durations": self.durations, "machine": self._machine(),
                "rows": [r.__dict__ | {"recorder": _num(r.recorder) if _num(r.recorder) is not None
                                       else r.recorder} for r in self.rows],
                "runs": self.runs, "errors": self.errors, "elapsed_s": self.elapsed_s}

    def _machine(self) -> dict:
        return {"cores": os.cpu_count(), "cpu": _cpu_model(), "kernel": platform.release(),
                "recorder_code": self.recorder_code,
                "loadavg_start": self.load_start, "loadavg_end": os.getloadavg(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))}

    def render(self) -> str:
        def cell(v: object, fmt: str) -> str:
            if v is None or (isinstance(v, float) and math.isnan(v)):
                return "-"
            if isinstance(v, str):
                return v
            try:
                return fmt.format(v)
            except (ValueError, TypeError):
                return str(v)

        header = ("measure", "recorder", "baseline", "ratio", "target", "verdict")
        lines = [header]
        notes = []
        for r in self.rows:
            label = r.label
            if r.note:
                notes.append(f"[{len(notes) + 1}] {r.label.strip()}: {r.note}")
                label += f" [{len(notes)}]"
            lines.append((label, cell(r.recorder, r.fmt), cell(r.baseline, r.fmt),
                          "-" if r.ratio is None else f"{r.ratio:.2f}x", r.target or "-", r.verdict))
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        out = []
        m = self._machine()
        out.append(f"webrecord recorder benchmark ({'quick' if self.quick else 'full'}), "
                   f"{m['started']}, {m['cores']} cores ({m['cpu']})")
        out.append(f"loadavg at start {_la(m['loadavg_start'])}, at end {_la(m['loadavg_end'])}; "
                   f"durations {self.durations}; took {self.elapsed_s:.0f} s")
        out.append(f"recorder code: {m['recorder_code']}")
        sep = "  "
        out.append(sep.join(h.ljust(w) for h, w in zip(header, widths)))
        out.append(sep.join("-" * w for w in widths))
        section = None
        for r, line in zip(self.rows, lines[1:]):
            if section is not None and r.section != section:
                out.append("")
            section = r.section
            out.append(sep.join(c.ljust(w) if i == 0 else c.rjust(w) if i < 4 else c.ljust(w)
                                for i, (c, w) in enumerate(zip(line, widths))).rstrip())
        if notes:
            out.append("")
            out += notes
        out.append("")
        out.append("runs (other load = cores busy with work outside the measured tree while it ran):")
        for run in self.runs:
            fid = run.get("fidelity") or {}
            av = run.get("av") or {}
            extra = (f"fidelity {fid['fidelity']:.2%} fps {fid['captured_fps']:.1f} "
                     f"start {fid['first_clock_ms']} ms" if fid else
                     f"A/V pairs {av.get('pairs')} mean {av.get('mean_ms', float('nan')):+.1f} ms")
            load = run["other_load"]
            out.append(f"  {run['name']:<14} {run['kind']:<8} {run['width']}x{run['height']} "
                       f"wall {run['wall_s']:.1f} s, tree CPU {run['total_cpu_s']:.1f} s, "
                       f"other load {'-' if load is None else f'{load:.2f}'}; {extra}")
            procs = run["extra"].get("steady_cpu_per_s_by_process")
            if procs:
                top = ", ".join(f"{k} {v:.3f}" for k, v in list(procs.items())[:7] if v >= 0.001)
                out.append(f"      steady CPU s/s by process: {top}")
        if self.errors:
            out.append("")
            out.append("errors:")
            out += [f"  {s}: {msg}" for s, msg in self.errors]
        return "\n".join(out)


def _recorder_code() -> str:
    """Which recorder was measured: last commit touching it, and whether the tree differs."""
    root = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(["git", "log", "-1", "--format=%h %s", "--", "operator/webrecord/recorder"],
                              cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "operator/webrecord/recorder"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head[:70]}{' + uncommitted changes' if dirty else ''}"


def _la(t: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in t)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _run_dict(run: Run) -> dict:
    return {"name": run.name, "kind": run.kind, "width": run.width, "height": run.height,
            "duration": run.duration, "out": str(run.out), "exit_code": run.exit_code,
            "wall_s": run.wall_s, "total_cpu_s": run.total_cpu_s, "other_load": run.other_load,
            "chromium_argv": run.chromium_argv, "ffmpeg_argv": run.ffmpeg_argv,
            "extra": run.extra, "log": run.log}
