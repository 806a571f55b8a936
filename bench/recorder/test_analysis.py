"""Unit tests of the benchmark's analysers on synthetic videos made with ffmpeg (lavfi).

Run: python3 -m pytest bench/recorder/test_analysis.py  (tests/bench/ runs these in CI).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from recbench import analysis as an  # noqa: E402
from recbench import proctree  # noqa: E402

FPS = 30


def _ffmpeg(args: list[str], timeout: float = 60) -> None:
    out = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-800:]


# ---------------------------------------------------------------------------- barcodes

def _bit_expr(value: str, k: int) -> str:
    return f"mod(floor(({value})/pow(2,{k})),2)"


def _band_filters(value: str, visible: str, band: tuple[float, float], w: int, h: int) -> list[str]:
    """drawbox filters painting one barcode band whose value is an ffmpeg expression of n."""
    y0 = round(band[0] * h)
    bh = round(band[1] * h) - y0
    out = [f"drawbox=x=0:y={y0}:w={w}:h={bh}:color=white:t=fill:enable='{visible}'"]
    for i in range(an.CELLS):
        if i == 0:
            on = "1"
        elif i == 1:
            continue
        elif i < 2 + an.DATA_BITS:
            on = _bit_expr(value, an.DATA_BITS - 1 - (i - 2))
        else:
            j = an.CHECK_BITS - 1 - (i - 2 - an.DATA_BITS)
            # check bit j = parity of bit j of every nibble (xor of nibbles)
            terms = "+".join(_bit_expr(value, 4 * m + j) for m in range(an.DATA_BITS // 4))
            on = f"mod({terms},2)"
        x0 = round(i * w / an.CELLS)
        cw = round((i + 1) * w / an.CELLS) - x0
        out.append(f"drawbox=x={x0}:y={y0}:w={cw}:h={bh}:color=black:t=fill:"
                   f"enable='({visible})*eq({on},1)'")
    return out


# The synthetic "page": counter 100 + 2n (a 60 Hz page captured at 30 fps), with a repeat at
# n=10, a reorder at n=20, a torn frame at n=30 (bottom band one frame ahead), no barcode at
# n=40 and before n=3 (page not shown yet). The clock band reads 1000 + 33n ms.
BASE = "(100+2*n)"
COUNTER = f"if(eq(n,10),100+2*9,if(eq(n,20),100+2*18,{BASE}))"
BOTTOM = f"if(eq(n,30),{COUNTER}+1,{COUNTER})"
CLOCK = "(1000+33*n)"
VISIBLE = "gte(n,3)*not(eq(n,40))"
FRAMES = 50


def _expected_counter(n: int) -> int:
    return {10: 100 + 2 * 9, 20: 100 + 2 * 18}.get(n, 100 + 2 * n)


def _make_barcode_video(path: Path, w: int, h: int, setpts: str | None = None) -> None:
    filters = [f"color=c=gray:s={w}x{h}:r={FPS}:d={FRAMES / FPS}"]
    filters += _band_filters(COUNTER, VISIBLE, an.BANDS[0], w, h)
    filters += _band_filters(CLOCK, VISIBLE, an.BANDS[1], w, h)
    filters += _band_filters(BOTTOM, VISIBLE, an.BANDS[2], w, h)
    if setpts:
        filters.append(f"setpts='{setpts}'")
    script = path.with_suffix(".filter")
    script.write_text(",".join(filters))
    _ffmpeg(["-filter_complex_script", str(script),
             "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
             "-fps_mode", "passthrough", str(path)])


def test_barcode_round_trip_through_h264(tmp_path: Path) -> None:
    video = tmp_path / "codes.mp4"
    _make_barcode_video(video, 1280, 720)
    fid, codes = an.analyse_barcode_video(video, FPS)

    assert codes.state[:3] == [an.NO_PAGE] * 3
    assert codes.state[30] == an.TORN
    assert codes.state[40] == an.NO_PAGE
    for n in range(3, FRAMES):
        if n in (30, 40):
            continue
        assert codes.state[n] == an.OK, (n, codes.state[n])
        assert codes.counter[n] == _expected_counter(n)
        assert codes.clock_ms[n] == 1000 + 33 * n
    np.testing.assert_allclose(codes.times, np.arange(FRAMES) / FPS, atol=1e-3)

    assert (fid.frames, fid.lead_in, fid.tail, fid.window) == (FRAMES, 3, 0, FRAMES - 3)
    assert (fid.repeats, fid.reorders, fid.torn, fid.undecodable) == (1, 1, 1, 1)
    assert fid.good == (FRAMES - 4) - 4
    assert fid.missing_slots == 0
    assert fid.fidelity == pytest.approx(fid.good / (FRAMES - 4))
    assert fid.first_clock_ms == 1000 + 33 * 3
    assert fid.last_clock_ms == 1000 + 33 * (FRAMES - 1)
    assert fid.lead_in_s == pytest.approx(3 / FPS, abs=1e-3)
    # One page frame skipped per capture, more around the anomalies.
    assert fid.skipped_max == 5 and fid.skips_hist[1] == fid.good - 4
    assert fid.page_fps == pytest.approx(60, rel=0.02)
    assert fid.captured_fps == pytest.approx(FPS, rel=0.01)


def test_dropped_captures_count_as_missing_slots(tmp_path: Path) -> None:
    video = tmp_path / "gap.mp4"
    # Frames 25.. are shown 5 frame periods late: five captures never happened.
    _make_barcode_video(video, 640, 360, setpts=f"(N+5*gte(N,25))/{FPS}/TB")
    fid, _ = an.analyse_barcode_video(video, FPS)
    assert fid.missing_slots == 5
    assert fid.fidelity == pytest.approx(fid.good / (fid.window - 1 + 5))
    assert fid.fidelity < fid.fidelity_captured


def test_encoding_matches_the_page() -> None:
    html = (HERE / "pages" / "frames.html").read_text()

    def const(name: str) -> str:
        m = re.search(rf"const {name} = ([^;]+);", html)
        assert m, name
        return m.group(1)

    assert int(const("CELLS")) == an.CELLS
    assert int(const("DATA_BITS")) == an.DATA_BITS
    assert int(const("CHECK_BITS")) == an.CHECK_BITS
    bands = [tuple(float(x) for x in pair) for pair in
             re.findall(r"\[([0-9.]+), ([0-9.]+)\]", const("BANDS"))]
    assert bands == [tuple(b) for b in an.BANDS]
    assert len(an.encode_bits(12345)) == an.CELLS
    assert an.check_bits(0x12345) == 1 ^ 2 ^ 3 ^ 4 ^ 5


# ---------------------------------------------------------------------------- flash and beep

def _make_av_video(path: Path, delay_s: float, seconds: int = 6) -> None:
    """Flash at 0.5 s + k and a 1 kHz beep at 0.5 s + delay_s + k, for k = 0, 1, ..."""
    start = 0.5 + delay_s
    gate = f"gte(t,{start})*lt(mod(t-{start},1),0.1)"
    _ffmpeg([
        "-f", "lavfi", "-i", f"color=c=black:s=320x180:r={FPS}:d={seconds},"
                             f"drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:"
                             f"enable='gte(t,0.5)*lt(mod(t-0.5,1),0.1)'",
        "-f", "lavfi", "-i", f"aevalsrc='0.8*sin(2*PI*1000*t)*{gate}':s=48000:d={seconds}",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "128k", str(path),
    ])


@pytest.mark.parametrize("delay_ms", [80, -60, 0])
def test_av_offset_from_flash_and_beep(tmp_path: Path, delay_ms: int) -> None:
    video = tmp_path / "av.mp4"
    _make_av_video(video, delay_ms / 1000)
    times, luma = an.frame_luma(video)
    flashes = an.flash_onsets(times, luma)
    np.testing.assert_allclose(flashes, 0.5 + np.arange(6), atol=1e-3)
    samples, stimes, rate = an.audio_samples(video)
    assert rate == 48000
    beeps = an.beep_onsets(samples, stimes)
    assert len(beeps) in (5, 6)  # a beep starting past the end is cut
    av = an.analyse_av_video(video)
    assert av.pairs == len(beeps)
    # AAC and the 1 kHz period leave about a millisecond of uncertainty.
    assert av.mean_ms == pytest.approx(delay_ms, abs=2.5)
    assert av.max_abs_ms <= abs(delay_ms) + 2.5


def test_pairing_ignores_unmatched_onsets() -> None:
    av = an.pair_onsets([1.0, 2.0, 3.0], [1.03, 2.5, 3.01, 9.0])
    assert av.pairs == 2
    assert av.offsets_ms == pytest.approx([30.0, 10.0])
    assert av.flashes == 3 and av.beeps == 4


def test_no_beeps_in_silence() -> None:
    t = np.arange(48000) / 48000
    assert an.beep_onsets(np.zeros(48000, dtype=np.float32), t) == []


# ---------------------------------------------------------------------------- CPU accounting

_BURN = """
import os, sys
def burn(n):
    x = 0
    for i in range(n):
        x += i * i
    return x
pid = os.fork()
if pid == 0:
    if os.fork() == 0:  # grandchild, orphaned while it still runs
        burn(int(sys.argv[1])); os._exit(0)
    os._exit(0)
burn(int(sys.argv[1]))
os.waitpid(pid, 0)
"""

# Runs in its own interpreter: becoming a subreaper would change the test session's process
# semantics (orphans of other tests would wait for us instead of init).
_MEASURE = """
import json, subprocess, sys
sys.path.insert(0, sys.argv[1])
from recbench import proctree
proctree.become_subreaper()
before = proctree.children_cpu()
proc = subprocess.Popen([sys.executable, "-c", sys.argv[2], "3000000"], start_new_session=True)
sampler = proctree.TreeSampler(proc.pid, interval=0.05)
sampler.start()
proc.wait(timeout=60)
proctree.reap_orphans(sampler.keys(), timeout=30)
sampler.stop()
print(json.dumps({"truth": proctree.children_cpu() - before,
                  "sampled": sampler.cpu_between(0, float("inf")), "seen": len(sampler.seen)}))
"""


@pytest.mark.timeout(90)
def test_tree_sampler_counts_children_and_orphans() -> None:
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(HERE), _BURN],
                         capture_output=True, text=True, timeout=80)
    assert out.returncode == 0, out.stderr[-800:]
    result = json.loads(out.stdout)
    # rusage of everything reaped (the orphaned grandchild included) is the truth.
    assert result["truth"] > 0.2
    # Sampling misses at most the last interval of each of the 3 processes.
    assert result["sampled"] == pytest.approx(result["truth"], abs=0.2 + 0.1 * result["truth"])
    assert result["seen"] >= 3


def test_samplers_running_together_share_one_walk_of_proc(monkeypatch) -> None:
    """Three recordings at once are measured by three samplers: one walk of /proc per tick
    for all of them, so the harness takes a third of the CPU from the machine it measures."""
    walks = []
    real = proctree.snapshot
    monkeypatch.setattr(proctree, "snapshot", lambda: walks.append(1) or real())
    samplers = [proctree.TreeSampler(os.getpid(), interval=0.1) for _ in range(3)]
    for sampler in samplers:
        sampler.start()
    time.sleep(1.0)
    for sampler in samplers:
        sampler.stop()
    ticks = [len(sampler.samples) for sampler in samplers]
    assert all(n >= 8 for n in ticks), ticks  # each still samples every interval
    # start() and stop() take their own walk (exact ends); the ~10 ticks between are shared.
    assert len(walks) <= 6 + 13, (len(walks), ticks)


# ---------------------------------------------------------------------------- baseline command

def test_baseline_ffmpeg_command_drops_only_the_audio() -> None:
    from recbench.bare import strip_audio

    pulse_first = ("ffmpeg -hide_banner -loglevel info -y -itsoffset -5 -thread_queue_size 512 "
                   "-f pulse -fragment_size 3840 -i rec.monitor -itsoffset -5 -f x11grab "
                   "-framerate 30 -i :1.0+0,0 -map 1:v -map 0:a -copyts -c:v libx264 -crf 23 "
                   "-c:a aac -b:a 128k -ar 48000 -f mpegts out.ts").split()
    assert " ".join(strip_audio(pulse_first)) == (
        "ffmpeg -hide_banner -loglevel info -y -itsoffset -5 -f x11grab -framerate 30 "
        "-i :1.0+0,0 -map 0:v -copyts -c:v libx264 -crf 23 -f mpegts out.ts")
    video_first = ("ffmpeg -y -f x11grab -i :1 -f pulse -i rec.monitor -map 0:v -map 1:a "
                   "-c:v libx264 -c:a aac -f mpegts o.ts").split()
    assert " ".join(strip_audio(video_first)) == "ffmpeg -y -f x11grab -i :1 -map 0:v -c:v libx264 -f mpegts o.ts"


def test_baseline_reuses_the_recorder_runs_ffmpeg_command() -> None:
    from recbench.bare import from_captured_ffmpeg

    captured = ("ffmpeg -y -itsoffset -1795613714.337012 -f x11grab -framerate 30 "
                "-i :2.0+0,0 -itsoffset -1795613714.337012 -f pulse -i rec.monitor "
                "-map 0:v -map 1:a -copyts -c:v libx264 -f mpegts /w/seg_0000.ts").split()
    argv = from_captured_ffmpeg(captured, ":7", Path("/tmp/base.ts"))
    assert argv[argv.index("x11grab") + 4] == ":7.0+0,0"
    assert argv[-1] == "/tmp/base.ts"
    offsets = [float(argv[i + 1]) for i, a in enumerate(argv) if a == "-itsoffset"]
    assert len(offsets) == 2 and offsets[0] == offsets[1] and offsets[0] != -1795613714.337012

    def normalised(a: list[str]) -> list[str]:
        return ["EPOCH" if i and a[i - 1] == "-itsoffset" else x for i, x in enumerate(a)][:-1]

    expected = normalised(captured)
    expected[expected.index(":2.0+0,0")] = ":7.0+0,0"
    assert normalised(argv) == expected  # everything else is the recorder's command as it ran


def test_baseline_commands_are_the_recorders_minus_plumbing(tmp_path: Path) -> None:
    """The bare capture runs the recorder's ffmpeg command as one file (a segment template is
    not a file name) and its Chromium without the recorder's egress proxy (gone by then): both
    broke the baseline once and every ratio with it."""
    from recbench import bare
    from webrecord.recorder.capture import ffmpeg_argv
    from webrecord.recorder.settings import RecorderSettings

    out = tmp_path / "base.ts"
    argv = bare.recorder_ffmpeg_argv(ffmpeg_argv, RecorderSettings(), ":99", 64, 64, out)
    assert argv[-1] == str(out)
    assert "segment" not in argv and not any(a.startswith("-segment") for a in argv)
    assert argv[argv.index(str(out)) - 1] == "mpegts"
    assert "libx264" in argv and "x11grab" in argv
    captured = ["/usr/bin/chromium", "--kiosk", "--proxy-server=socks5://127.0.0.1:9",
                "--proxy-bypass-list=<-loopback>", "--user-data-dir=/x", "--remote-debugging-pipe",
                "--window-size=10,10"]
    assert bare.chromium_command(captured, 64, 48) == ["/usr/bin/chromium", "--kiosk",
                                                       "--window-size=64,48"]
