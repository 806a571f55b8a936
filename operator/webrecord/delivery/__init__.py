"""The delivery stage the recorder runs after stop: upload, then callback.

Entry point: `webrecord.delivery.pipeline.deliver` (see docs/contracts.md section 2).
"""
