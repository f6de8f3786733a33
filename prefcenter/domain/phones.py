"""Where a phone number is registered: its time zones and its country subdivision (pure; data only).

COMPLIANCE item 22 and edge 5: calling windows are the CALLED party's local time, so for ``sms``,
``voice`` and ``whatsapp`` the gate checks the window (and quiet hours) in the profile's zone AND in
every zone the number belongs to. The zones come from phonenumbers' timezone data
(``time_zones_for_number``; a toll-free or non-geographic number can have many, an unknown one none).
The subdivision (ISO 3166-2, e.g. ``US-FL``) comes from phonenumbers' English geocoding of the number
("Florida", "Los Angeles, CA") matched against pycountry's subdivisions of the number's country, so a
policy override can name ``regions = ["US-FL"]``.
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
import pycountry
from phonenumbers import geocoder
from phonenumbers import timezone as phone_timezone

from prefcenter.domain.model import PhonePlace, is_iana_zone

__all__ = ["place_of", "subdivision_of"]


@lru_cache(maxsize=512)
def _subdivisions(country: str) -> dict[str, str]:
    """Subdivision names and codes (``"florida"`` and ``"fl"`` both to ``"US-FL"``) of a country."""
    table: dict[str, str] = {}
    for sub in pycountry.subdivisions.get(country_code=country) or ():  # type: ignore[no-untyped-call]
        code = str(sub.code)
        table[str(sub.name).casefold()] = code
        table[code.split("-", 1)[1].casefold()] = code
    return table


def subdivision_of(country: str, description: str) -> str | None:
    """The ISO 3166-2 code a geocoder description names in ``country`` ("Florida" or "Miami, FL")."""
    table = _subdivisions(country)
    if not table or not description:
        return None
    whole = table.get(description.strip().casefold())
    if whole is not None and whole.startswith(country + "-"):
        return whole
    _, sep, tail = description.rpartition(",")
    if sep:
        return table.get(tail.strip().casefold())
    return None


@lru_cache(maxsize=65536)
def place_of(number: str) -> PhonePlace:
    """Where an E.164 number is registered; an empty :class:`PhonePlace` when nothing is known."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return PhonePlace()
    zones = tuple(sorted(z for z in phone_timezone.time_zones_for_number(parsed) if is_iana_zone(z)))
    country = phonenumbers.region_code_for_number(parsed)
    if not country or country == "ZZ":
        return PhonePlace(zones=zones)
    region = subdivision_of(country, geocoder.description_for_number(parsed, "en"))
    return PhonePlace(zones=zones, country=country, region=region)
