"""One line per invalid input for command lines and the standby claim: each bad field named
with its rule (pydantic's own messages carry locations and URLs meant for developers)."""

from __future__ import annotations

from pydantic import ValidationError


def validation_message(exc: ValidationError, names: dict[str, str] | None = None) -> str:
    """One line naming each bad field and its rule, e.g. '--width: must be <= 2560'."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        name = (names or {}).get(loc, loc or "input")
        ctx = err.get("ctx") or {}
        kind = err["type"]
        if kind == "less_than_equal":
            rule = f"must be <= {ctx.get('le')}"
        elif kind == "greater_than_equal":
            rule = f"must be >= {ctx.get('ge')}"
        elif kind == "string_pattern_mismatch" and "http" in str(ctx.get("pattern", "")):
            rule = "must be an http:// or https:// URL"
        elif kind == "missing":
            rule = "is required"
        else:
            rule = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{name}: {rule}")
    return "; ".join(parts)
