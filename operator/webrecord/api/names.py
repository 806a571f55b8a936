"""Rules for names a caller chooses (Output.Cos.TargetDir / TargetName).

They become file paths under the output directory and object keys under a bucket, so they must
never leave that place: no `.`/`..` segment, no absolute path, no backslash (a separator on
some object-store gateways and Windows shares), no control character or NUL. A TargetName is one
name, so it has no `/` either. Percent signs are literal: `%2e%2e` is a directory named
`%2e%2e` (FileURL quotes it as `%252e%252e`), never decoded.

The same rules are written as CEL for the CRD (`CEL_RULES`) so kubectl and the protocol agree.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

# C0 controls, DEL and C1 controls (NUL included).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def relative_path_problem(value: str, single: bool = False) -> str | None:
    """Why `value` may not name a place under the target root, or None when it may."""
    if _CONTROL.search(value):
        return "must not contain control characters or NUL"
    if "\\" in value:
        return "must not contain a backslash"
    if value.startswith("/"):
        return "must be a relative path (no leading '/')"
    if single and "/" in value:
        return "must be a file name without '/'"
    if any(part in (".", "..") for part in value.split("/")):
        return "must not contain '.' or '..' path segments"
    return None


def check_target_dir(value: str | None) -> str | None:
    if value:
        problem = relative_path_problem(value)
        if problem:
            raise ValueError(problem)
    return value


def check_target_name(value: str | None) -> str | None:
    if value:
        problem = relative_path_problem(value, single=True)
        if problem:
            raise ValueError(problem)
    return value


# Field types that apply the rules, for the models and the protocol's shapes alike.
ContainedDir = Annotated[str | None, AfterValidator(check_target_dir)]
ContainedName = Annotated[str | None, AfterValidator(check_target_name)]


# CEL equivalents (x-kubernetes-validations) of the checks above, as (rule, message) pairs.
# CEL's matches() is RE2: `\\x00-\\x1f` is written as a class of escapes.
_CEL_COMMON = [
    ("!self.matches('[\\\\x00-\\\\x1f\\\\x7f-\\\\x9f]')",
     "must not contain control characters or NUL"),
    ("!self.contains('\\\\')", "must not contain a backslash"),
    ("!self.startsWith('/')", "must be a relative path (no leading '/')"),
    ("!self.split('/').exists(p, p == '.' || p == '..')",
     "must not contain '.' or '..' path segments"),
]
CEL_TARGET_DIR = _CEL_COMMON
CEL_TARGET_NAME = [*_CEL_COMMON, ("!self.contains('/')", "must be a file name without '/'")]
