"""Backends behind the adapter: `local` (subprocess recorders + SQLite) and `kubernetes`.

A backend module exposes `create(settings: AdapterSettings) -> Backend`; `create_backend`
imports only the one that is selected (the kubernetes client is not needed locally).
"""

from __future__ import annotations

import importlib

from webrecord.adapter.backends.base import Backend
from webrecord.adapter.settings import AdapterSettings

MODULES = {
    "local": "webrecord.adapter.backends.local",
    "kubernetes": "webrecord.adapter.backends.kubernetes",
}


def create_backend(settings: AdapterSettings) -> Backend:
    module = importlib.import_module(MODULES[settings.backend])
    return module.create(settings)
