"""Where recordings go: S3-compatible object stores, a mounted filesystem, VOD.

`settings.StorageSettings` configures all of them (env prefix WEBRECORD_); credentials come
from the environment or mounted secret files, never from the task.
"""
