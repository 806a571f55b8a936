"""Recorder tunables. Every field can be set from the environment with the WEBRECORD_ prefix."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RecorderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WEBRECORD_", extra="ignore")

    chromium_path: str = "/usr/bin/chromium"
    xvfb_path: str = "Xvfb"
    # The virtual display (recorder/display.py): "xorg" = Xorg's dummy driver refreshing at the
    # capture's frame rate, with the frame-locked grabber (framegrab), where Xorg is installed
    # and the page size fits the driver and is at most large_frame_pixels; Xvfb (60 Hz to
    # Chromium) and x11grab otherwise.
    # Three 720p30 recordings at once on 2 cores kept 99.1-99.8% of their frames with xorg,
    # 91-98% with xvfb (bench/recorder concurrency).
    display_server: Literal["xorg", "xvfb"] = "xorg"
    xorg_path: str = "/usr/lib/xorg/Xorg"
    pulseaudio_path: str = "pulseaudio"
    ffmpeg_path: str = "ffmpeg"
    ffprobe_path: str = "ffprobe"

    # None = automatic: without the sandbox only as root (Chromium refuses otherwise). Set true
    # where user namespaces are blocked (some pod security profiles).
    chromium_no_sandbox: bool | None = None
    # Extra Chromium flags (JSON list in WEBRECORD_CHROMIUM_ARGS).
    chromium_args: list[str] = Field(default_factory=list)
    fps: int = Field(30, ge=1, le=60)
    # A cheap preset keeps the encoder near the cost of a bare x11grab capture. superfast vs
    # veryfast, 8 s of a 720p dashboard-like page (text scrolling, animation, canvas) at crf 23:
    # 30% less encoder CPU (1.01 vs 1.44 s), 11% more bytes, the same SSIM (0.9985 vs 0.9984);
    # ultrafast would save 56% CPU for 71% more bytes.
    x264_preset: str = "superfast"
    # zerolatency: no lookahead or B-frames, so no audio waits behind buffered video frames
    # when ffmpeg is told to stop (it would be dropped) and start/stop latency stays low.
    x264_tune: str = "zerolatency"
    # Above ~1080p the cheap preset cannot keep 30 fps on a small machine; use the cheapest.
    x264_preset_large: str = "ultrafast"
    # x264 threads; 0: x264's choice (sliced with zerolatency, one per core). One thread costs
    # less in all (720p30 frames page: ffmpeg 0.30 vs 0.35 CPU s/s; 1080p30 recording 1.27 vs
    # 1.34) and is steadier when recordings share the cores: three 720p30 ones at once on 2
    # cores, min fidelity 94.7/93.8% with one thread vs 92.6/80.1% with x264's choice (two
    # runs each, same session). Above large_frame_pixels one thread is too slow: x264's choice.
    x264_threads: int = Field(1, ge=0, le=64)
    x264_threads_large: int = Field(0, ge=0, le=64)
    large_frame_pixels: int = Field(1920 * 1080, ge=1)
    large_frame_fps: int = Field(15, ge=1, le=60)
    # Autogroup nice of a recorder's sessions (itself and Playwright's driver, Xvfb, PulseAudio,
    # Chromium) from its start until its capture begins, so a start does not take the CPU from
    # recordings already capturing on the machine (recorder/priority.py); 0 = off.
    startup_nice: int = Field(10, ge=0, le=19)

    def fps_for(self, width: int, height: int) -> int:
        """The frame rate a page of this size is captured at: above ~1080p neither grabbing
        nor encoding keeps 30 fps on a small machine."""
        if width * height > self.large_frame_pixels:
            return min(self.fps, self.large_frame_fps)
        return self.fps
    video_queue_bytes: int = Field(64 * 1024 * 1024, ge=1)
    x264_crf: int = Field(23, ge=0, le=51)
    keyint_seconds: float = Field(2.0, gt=0)
    audio_bitrate: str = "128k"
    # ffmpeg's AAC search: "fast" encodes sound in half the CPU of the default "twoloop"
    # (60 s of 48 kHz stereo at 128k: 0.50 s vs 1.06 s), inaudibly different at this bitrate.
    aac_coder: str = Field("fast", pattern="^(fast|twoloop|anmr)$")
    audio_rate: int = 48000
    # Bytes per pulse read: 9600 = 50 ms of 48 kHz stereo s16. Each read wakes ffmpeg and the
    # sound server; the stamp's lag (one chunk) is taken off (capture.audio_stamp_shift), so
    # sync does not depend on the size. Sound path alone, 15 s, cores (ffmpeg + sound server):
    # 20 ms reads 0.025 + 0.026; 50 ms 0.018 + 0.023; with the keep-alive at 200 ms, 0.011 + 0.008.
    pulse_fragment_bytes: int = Field(9600, ge=256)

    @property
    def pulse_chunk_seconds(self) -> float:
        """How much sound one pulse read holds (stereo s16 at audio_rate)."""
        return self.pulse_fragment_bytes / (self.audio_rate * 2 * 2)

    # A silent loopback into the sink (see audio.PulseAudio.start).
    pulse_keepalive: bool = True
    # Stamp audio with the time ffmpeg reads it (like x11grab's frames) rather than the pulse
    # demuxer's latency-filtered clock, whose start-up estimate can stay ~130 ms off for a
    # whole segment (measured with tests/pages/recorder_sync.html).
    pulse_read_timestamps: bool = True
    # How long the page's sound takes to reach the sink (Chromium's output buffer, the sound
    # server's queue); taken off the sound's stamps (capture.audio_stamp_shift). Measured with
    # bench/recorder av (flash and beep made in one rAF callback): with the chunk and half-frame
    # terms alone the sound sat +16.7/+10.9/+8.3 ms late over three runs; with 12 ms, +3.2/-3.6/
    # +3.0 (mean |offset| 8.2/8.7/9.3 ms, max 17.6/19.2/18.2); with 50 ms reads and the 200 ms
    # keep-alive, -1.4/+3.9/+2.7 (8.4/8.3/8.2, max 16.8/15.2/17.5).
    audio_output_latency_ms: float = Field(12.0, ge=0, le=500)
    hls_segment_seconds: float = Field(4.0, gt=0)
    # Recording segments close (and go to the segment store) this often: a lost recorder loses
    # at most this much. Cut at the next keyframe (keyint_seconds) after each multiple.
    segment_seconds: float = Field(10.0, gt=0, description="Segment rotation period")
    # Set by whoever starts a replacement recorder for a task that was paused.
    start_paused: bool = Field(False, description="Start the recording paused")
    # Set for a replacement recorder of a task that was already stopped: no new recording,
    # package and deliver the stored segments.
    resume_stopped: bool = False
    # SIGTERM (pod drained, evicted or deleted): hand the task over to a new recorder (suspend)
    # or stop and deliver. None = suspend when the segments live outside this recorder's work
    # dir (a bucket or WEBRECORD_SEGMENT_DIR), where the next recorder finds them.
    sigterm_suspends: bool | None = None

    manual_start_timeout: float = Field(300.0, gt=0, description="Seconds to wait for startRecord()")
    page_load_timeout: float = Field(30.0, gt=0)
    browser_start_timeout: float = Field(30.0, gt=0)
    display_start_timeout: float = Field(10.0, gt=0)
    audio_start_timeout: float = Field(10.0, gt=0)
    encoder_start_timeout: float = Field(10.0, gt=0, description="Wait for ffmpeg's first frames")
    # ffmpeg drops the frames still queued for its encoder when told to quit: at a stop it first
    # gets this long to write what was grabbed before the stop (an encoder slower than real time
    # runs behind; one that keeps up is done at once).
    encoder_drain_timeout: float = Field(5.0, ge=0, description="Wait at a stop for a lagging encoder to catch up")
    encoder_stop_timeout: float = Field(5.0, gt=0, description="Wait after 'q' before killing ffmpeg")
    # Held on the work dir's disk from the start, freed when it fills (and before packaging), so
    # the segment being written can still be closed and stored: a full disk loses nothing
    # recorded. 0 turns it off.
    disk_reserve_mb: int = Field(32, ge=0, description="Room held back for the end of a recording (MiB)")
    max_browser_restarts: int = Field(3, ge=0)
    max_encoder_restarts: int = Field(3, ge=0)
    max_paused_seconds: float = Field(21600.0, gt=0, description="Auto-stop after this long paused")
    # MaxDurationLimit counts recorded time only (pauses excluded); this caps the wall-clock
    # life of a task from its createTime (paused, waiting or stuck). At most 25 h: segment
    # timestamps (MPEG-TS, one clock per task) wrap after 26.5 h.
    max_wall_seconds: float = Field(86400.0, gt=0, le=90000,
                                    description="Auto-stop this long after the task was created")
    progress_interval: float = Field(1.0, gt=0)
    # Live outputs (recorder/live.py): per receiver, what may wait for a slow one before its
    # bytes are dropped (the recording never waits), the reconnect backoff, the feed's poll.
    live_buffer_bytes: int = Field(8 * 1024 * 1024, ge=65536)
    live_retry_min_seconds: float = Field(1.0, gt=0)
    live_retry_max_seconds: float = Field(30.0, gt=0)
    live_poll_seconds: float = Field(0.04, gt=0, le=1)
    live_probe_seconds: float = Field(5.0, gt=0, description="How long a relay may look for a keyframe")
    live_stop_timeout: float = Field(3.0, gt=0)
    # rtmps:// receivers: their certificate is verified (chain and name) unless this is false;
    # ffmpeg's own default is not to verify at all, so a man in the middle would get the key.
    live_tls_verify: bool = True
    # A PEM bundle of the CAs that rtmps receivers' certificates must chain to (a private CA);
    # unset: the system's trust store (ca-certificates).
    live_ca_file: str | None = None
    # Live HLS (recorder/livehls.py, output.liveHls): closed segments waiting for upload (paths,
    # not data: the files stay on disk for the final delivery), the upload backoff, and how
    # long Stop waits for the backlog and #EXT-X-ENDLIST before delivering the final video.
    live_hls_queue: int = Field(4000, ge=1, description="Segments that may wait for upload "
                                "(36000 s at 10 s each: a whole task)")
    live_hls_retry_min_seconds: float = Field(0.5, gt=0)
    live_hls_retry_max_seconds: float = Field(10.0, gt=0)
    live_hls_finish_seconds: float = Field(60.0, ge=0)
    # Idle and blank pages (recorder/idle.py): a task's idle.blankSeconds, or this when unset
    # (0 = off, the default: a deliberately plain page keeps recording as before).
    blank_page_seconds: int = Field(0, ge=0, le=3600,
                                    description="Fail PageBlank after this long flat and silent")
    idle_silence_db: float = Field(-50.0, le=0, description="Quieter than this is silence")
    # Mean absolute difference of two 32x18 grey keyframes (0-255) that counts as a change;
    # above the encoder's noise on an unchanged page.
    idle_change_level: float = Field(1.5, gt=0)
    blank_flat_level: int = Field(6, ge=0, description="Grey range of a flat (blank) frame")
