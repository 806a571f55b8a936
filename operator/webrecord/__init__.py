"""webrecord: record web pages to video, on Kubernetes or on one machine."""

__version__ = "0.1.0"
