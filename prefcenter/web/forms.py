"""The preference page's form: its fields as the browser sends them, the form as the page shows the
current preferences, and a submitted form turned into new preferences or the errors that prevent them
(saved by :func:`prefcenter.services.self_service.save_choices`)."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime, time
from typing import Literal
from zoneinfo import ZoneInfo

import msgspec

from prefcenter.domain.model import CHANNELS, Channel, Preferences, QuietHours

FieldName = Literal["channel", "topics", "quiet", "max_per_week", "paused_until"]
_TIME_RE = re.compile(r"^(\d{1,2}):(\d{2})(?::00(?:\.0+)?)?\Z")
_FORM_LIMIT = 64


class PageForm(msgspec.Struct):
    """The preference form's fields as the browser sends them (strings; validated by
    :func:`preferences_from_form`)."""

    channel: str = "none"
    topics: list[str] = []
    quiet: str = "none"
    quiet_start: str = ""
    quiet_end: str = ""
    max_per_week: str = ""
    paused_until: str = ""

    def preferences(
        self, current: Preferences, zone: ZoneInfo, marketing_topics: set[str], now: datetime
    ) -> tuple[Preferences | None, dict[str, str]]:
        """:func:`preferences_from_form` of this form (what the self-service save asks of its choices)."""
        return preferences_from_form(self, current, zone, marketing_topics, now)


def form_from_fields(fields: dict[str, list[str]]) -> PageForm:
    """A PageForm from submitted fields (first value of each single field; every ``topics`` value)."""

    def one(name: str) -> str:
        values = fields.get(name) or [""]
        return values[0].strip()[:_FORM_LIMIT]

    return PageForm(
        channel=one("channel") or "none",
        topics=[t.strip()[:_FORM_LIMIT] for t in fields.get("topics", [])[:500]],
        quiet=one("quiet") or "none",
        quiet_start=one("quiet_start"),
        quiet_end=one("quiet_end"),
        max_per_week=one("max_per_week"),
        paused_until=one("paused_until"),
    )


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def form_from_preferences(prefs: Preferences, zone: ZoneInfo) -> PageForm:
    """The form exactly as the page shows the current preferences (submitting it unchanged is a no-op)."""
    return PageForm(
        channel=prefs.channel or "none",
        topics=list(prefs.topics),
        quiet="on" if prefs.quiet_hours else "none",
        quiet_start=prefs.quiet_hours.start if prefs.quiet_hours else "",
        quiet_end=prefs.quiet_hours.end if prefs.quiet_hours else "",
        max_per_week=str(prefs.max_per_week) if prefs.max_per_week is not None else "",
        paused_until=local_date(prefs.paused_until, zone).isoformat() if prefs.paused_until else "",
    )


def _ascii_digits(text: str) -> str:
    """Any script's decimal digits (Persian ۲, Arabic-Indic ٢, full-width ２) as ASCII digits."""
    return "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in text)


def _parse_time(text: str) -> str | None:
    match = _TIME_RE.match(_ascii_digits(text))
    if not match:
        return None
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23 or minute > 59:
        return None
    return f"{hour:02d}:{minute:02d}"


def preferences_from_form(
    form: PageForm,
    current: Preferences,
    zone: ZoneInfo,
    marketing_topics: set[str],
    now: datetime,
) -> tuple[Preferences | None, dict[str, str]]:
    """New preferences from a submitted form, or the errors (field -> message key) that prevent them.

    - ``channel``: ``none`` or one channel.
    - ``quiet``: ``none`` or ``on`` with two different times. Times typed while "No quiet hours" is
      chosen are an error rather than a guess.
    - ``max_per_week``: empty (no cap) or 1-50.
    - ``paused_until``: empty (no pause) or a date; marketing resumes at 00:00 of that date in the
      customer's time zone. The date must be after today, unless it is the date already shown (then the
      stored instant is kept exactly, so an untouched form changes nothing).
    """
    errors: dict[str, str] = {}  # FieldName -> message key

    channel: Channel | None = None
    if form.channel != "none":
        channel = next((ch for ch in CHANNELS if ch == form.channel), None)
        if channel is None:
            errors["channel"] = "channel"

    topics = sorted(set(form.topics))
    if any(t not in marketing_topics for t in topics):
        errors["topics"] = "topics"

    shown = form_from_preferences(current, zone)
    quiet: QuietHours | None = None
    if form.quiet == "on":
        if not form.quiet_start or not form.quiet_end:
            errors["quiet"] = "quiet_missing"
        else:
            start, end = _parse_time(form.quiet_start), _parse_time(form.quiet_end)
            if start is None or end is None:
                errors["quiet"] = "quiet_invalid"
            elif start == end:
                errors["quiet"] = "quiet_same"
            else:
                quiet = QuietHours(start=start, end=end)
    elif form.quiet == "none":
        typed = (form.quiet_start, form.quiet_end)
        if any(typed) and typed != (shown.quiet_start, shown.quiet_end):
            errors["quiet"] = "quiet_conflict"
    else:
        errors["quiet"] = "quiet_missing"

    cap: int | None = None
    if form.max_per_week:
        digits = _ascii_digits(form.max_per_week)
        if digits.isascii() and digits.isdigit() and 1 <= int(digits) <= 50:
            cap = int(digits)
        else:
            errors["max_per_week"] = "cap_invalid"

    paused: datetime | None = None
    if form.paused_until:
        try:
            day = date.fromisoformat(_ascii_digits(form.paused_until))
        except ValueError:
            errors["paused_until"] = "pause_invalid"
        else:
            if current.paused_until is not None and day == local_date(current.paused_until, zone):
                paused = current.paused_until
            elif day <= now.astimezone(zone).date():
                errors["paused_until"] = "pause_past"
            else:
                paused = datetime.combine(day, time(0, 0), tzinfo=zone).astimezone(UTC)

    if errors:
        return None, errors
    return (
        Preferences(channel=channel, topics=topics, quiet_hours=quiet, max_per_week=cap, paused_until=paused),
        {},
    )
