"""The environment of everything the recorder starts (Chromium, ffmpeg, Xvfb, PulseAudio).

A page that escapes its renderer, or an ffmpeg input that misbehaves, finds what its process
was given: so it is given only what it needs to run, by name (an allow-list, so a secret added
to the pod later cannot slip in). Storage keys, VOD keys and the callback secret stay in the
recorder's delivery step.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

# What Chromium, ffmpeg, Xvfb and PulseAudio read: the program path, a home for their caches,
# locale, time zone, temp dir and fonts. DISPLAY and PULSE_* are added by the caller.
PASS = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
    "FONTCONFIG_FILE", "FONTCONFIG_PATH", "XDG_DATA_DIRS", "XDG_CONFIG_DIRS",
    "CHROME_DEVEL_SANDBOX",
    # Tags every child of a test so the test can find leftovers (tests/recorder/conftest.py).
    "WEBRECORD_TEST_MARK",
})
_PASS_PREFIXES = ("LC_",)
# Never passed, even when a caller asks for it by name.
_SECRET = re.compile(r"^(AWS_|WEBRECORD_|VOD_|TENCENTCLOUD_)|SECRET|TOKEN|PASSWORD|CREDENTIAL|KEY",
                     re.IGNORECASE)


def minimal_env(extra: Mapping[str, str] | None = None,
                source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allow-listed variables of `source` (default: os.environ), plus `extra` (DISPLAY,
    PULSE_SERVER ...). A secret-looking name in `extra` is a bug and raises ValueError."""
    source = os.environ if source is None else source
    env = {k: v for k, v in source.items()
           if k in PASS or (k.startswith(_PASS_PREFIXES) and not _SECRET.search(k))}
    env.setdefault("PATH", os.defpath)
    for key, value in (extra or {}).items():
        if _SECRET.search(key):
            raise ValueError(f"{key} must not reach a child process")
        env[key] = value
    return env
