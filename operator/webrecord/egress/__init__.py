"""Connect-time egress policy: which addresses a recording may reach, and the proxy that
enforces it for Chromium (see README.md here)."""
