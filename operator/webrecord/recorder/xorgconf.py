"""Xorg with the dummy video driver as the virtual display: one screen of exactly WxH whose
only mode refreshes at exactly the capture's frame rate.

Why not Xvfb: Chromium paces its frames by the refresh rate it reads through XRandR, and Xvfb
reports 0 Hz, which Chromium takes as 60. A 30 fps recording then pays for 60 page frames a
second and keeps half. On this display Chromium draws at the capture's rate, and the capture
locks onto its frames (framegrab). Measured (bench/recorder, 720p30, one recording's CPU per
8 s): Chromium 2.36 -> 1.07 s, the X server 0.64 -> 0.39 s."""

from __future__ import annotations

from pathlib import Path

# Horizontal and vertical blanking of the mode. Only the ratio dot clock / (htotal * vtotal)
# matters (it is the refresh rate); small blanking keeps the clock under the driver's limit.
H_BLANK = 80
V_BLANK = 30
# What the dummy driver accepts (its log: "Clock range: 11.00 to 300.00 MHz"; "Virtual height
# (100) is too small for the hardware (min 128)"; 32 pixels wide: "Initial CRTC configuration
# failed", 200 works).
MIN_CLOCK_KHZ = 11_000
MAX_CLOCK_KHZ = 300_000
MIN_HEIGHT = 128
MIN_WIDTH = 200


def mode_timings(width: int, height: int, refresh: int) -> tuple[int, int, int]:
    """(dot clock in kHz, htotal, vtotal) of a mode that refreshes at exactly `refresh` Hz.
    Xorg keeps the clock in whole kHz, so htotal is rounded up until the clock is whole; a
    small screen gets a wide blanking to reach the driver's lowest clock."""
    vtotal = height + V_BLANK
    htotal = max(width + H_BLANK, -(-MIN_CLOCK_KHZ * 1000 // (vtotal * refresh)))
    htotal = (htotal + 7) // 8 * 8
    while (htotal * vtotal * refresh) % 1000:
        htotal += 8
    return htotal * vtotal * refresh // 1000, htotal, vtotal


def fits(width: int, height: int, refresh: int) -> bool:
    """Whether the dummy driver can show this screen at this rate (else: Xvfb)."""
    clock, _, _ = mode_timings(width, height, refresh)
    return width >= MIN_WIDTH and height >= MIN_HEIGHT and MIN_CLOCK_KHZ <= clock <= MAX_CLOCK_KHZ


def refresh_of(clock_khz: int, htotal: int, vtotal: int) -> float:
    """The refresh rate a client (Chromium) computes from a mode."""
    return clock_khz * 1000 / (htotal * vtotal)


def config_text(width: int, height: int, refresh: int) -> str:
    clock, htotal, vtotal = mode_timings(width, height, refresh)
    # The framebuffer (depth 24 at 32 bits a pixel) plus room: the driver allocates VideoRam.
    video_ram_kb = (width * height * 4) // 1024 + 1024
    modeline = (f'"{width}x{height}_{refresh}" {clock / 1000:.3f} '
                f"{width} {width + 16} {width + 32} {htotal} "
                f"{height} {height + 3} {height + 6} {vtotal}")
    return f"""\
Section "ServerFlags"
  Option "AutoAddDevices" "false"
  Option "AutoAddGPU" "false"
  Option "DontVTSwitch" "true"
EndSection
Section "Device"
  Identifier "dummy"
  Driver "dummy"
  VideoRam {video_ram_kb}
EndSection
Section "Monitor"
  Identifier "monitor"
  HorizSync 1.0-2000.0
  VertRefresh 1.0-1000.0
  Modeline {modeline}
EndSection
Section "Screen"
  Identifier "screen"
  Device "dummy"
  Monitor "monitor"
  DefaultDepth 24
  SubSection "Display"
    Depth 24
    Modes "{width}x{height}_{refresh}"
    Virtual {width} {height}
  EndSubSection
EndSection
"""


def xorg_argv(xorg: str, config: Path, log_file: Path, displayfd: int) -> list[str]:
    """Xorg as an unprivileged process: no TCP, no input hotplug, its own log file, and no VT
    of its own (as root it would otherwise take a free one: -sharevts stays on the current)."""
    return [xorg, "-config", str(config), "-logfile", str(log_file), "-displayfd", str(displayfd),
            "-nolisten", "tcp", "-noreset", "-novtswitch", "-sharevts", "-dpi", "96"]
