"""Runs the recorder benchmark's analyser tests (bench/recorder/test_analysis.py) in CI.

The benchmark itself needs minutes of recording; its analysers (barcode decoding, flash and
beep detection, process-tree CPU accounting) are what must stay correct, so CI checks them on
synthetic ffmpeg videos here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_BENCH = Path(__file__).resolve().parents[2] / "bench" / "recorder"
if str(_BENCH) not in sys.path:
    sys.path.insert(0, str(_BENCH))

# Loaded under a unique name: a plain `import test_analysis` could clash with another module.
_spec = importlib.util.spec_from_file_location("recbench_test_analysis", _BENCH / "test_analysis.py")
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)

pytestmark = pytest.mark.timeout(60)

for _name in dir(_mod):
    if _name.startswith("test_"):
        globals()[_name] = getattr(_mod, _name)
