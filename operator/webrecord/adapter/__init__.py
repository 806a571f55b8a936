"""The HTTP adapter: the legacy Action protocol (`POST /` with `{"Action", "Data"}`) over a backend.

Entry points: `webrecord serve` (adapter.cli), `adapter.server.build_app(settings, backend)`.
"""
