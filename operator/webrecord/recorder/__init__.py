"""The recorder engine: Xvfb + PulseAudio + Chromium (Playwright) + ffmpeg, one task per process.

Modules, one job each:
- settings: tunables (pydantic-settings, env prefix WEBRECORD_)
- procs: child processes in their own process groups, bounded termination
- display: Xvfb at exactly WxH
- audio: a private PulseAudio daemon with a null sink
- browser: Chromium through Playwright, page hooks, crash events
- capture: one ffmpeg process per segment (x11grab + pulse -> H.264/AAC MPEG-TS)
- package: join segments into mp4 (faststart) or HLS (optionally AES-128), ffprobe
- session: the state machine (phases, controls, timers, crash recovery)
- control: the HTTP control endpoint (docs/contracts.md section 1)
- resume: continuing a task from the segments an earlier recorder stored; SIGTERM handover
- finish: after the session: delivery, where an undelivered recording is kept, segment purge
- runtask: `webrecord recorder` (one task with a control endpoint and a status file)
- foreground: `webrecord record` (one page to one file, progress line)
- supervise: the forked, signal-forwarding child both commands run in
- cli: the two commands' arguments (a thin entry point)
"""
