"""Request pieces shared by controllers: instants with a required offset. (The runtime is the ``rt``
dependency, wired in api/app.py.)"""

from __future__ import annotations

from datetime import datetime

from prefcenter.domain.model import FieldError, InvalidInput, check_instant


def parse_instant(value: str | None, field: str) -> datetime | None:
    """RFC 3339 with an offset; a time without an offset is a 400 (API.md conventions)."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidInput([FieldError(field, "not an RFC 3339 time")]) from None
    if moment.tzinfo is None or "T" not in value.upper():
        raise InvalidInput([FieldError(field, "an RFC 3339 time with an offset is required, e.g. ...Z")])
    check_instant(moment, field)
    return moment
