"""Delivery configuration: the storage settings plus the retries of the upload stage and the
callback (one pydantic-settings class, env prefix WEBRECORD_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from webrecord.storage.settings import StorageSettings


class DeliverySettings(StorageSettings):
    # --- retries of the whole upload stage (a target down for minutes) ---
    delivery_retry_s: float = Field(
        600.0, ge=0, description="Keep retrying failed uploads this long before giving up")
    delivery_backoff_s: float = Field(2.0, gt=0, description="First wait between tries; doubles")
    delivery_backoff_max_s: float = Field(60.0, gt=0)

    # --- callback ---
    callback_secret: SecretStr | None = Field(None, description="HMAC key for callback bodies")
    callback_secret_file: Path | None = Field(None, description="Mounted file with that key")
    callback_timeout_s: float = Field(2.0, gt=0, description="Per try")
    callback_attempts: int = Field(5, ge=1, le=20)
    callback_backoff_s: float = Field(0.5, ge=0, description="First retry delay; doubles")
    callback_backoff_max_s: float = Field(8.0, ge=0)

    def callback_key(self) -> bytes | None:
        if self.callback_secret is not None:
            return self.callback_secret.get_secret_value().encode()
        if self.callback_secret_file is not None:
            return self.callback_secret_file.read_text().strip().encode()
        key = self._mounted().get("webrecord_callback_secret")
        return key.encode() if key else None
