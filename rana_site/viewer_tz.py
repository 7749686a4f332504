"""The viewer's timezone, as every page that shows times reads it: ?tz=, else the rana_tz cookie
(set by the dashboards' script from the browser's own zone), else settings.TIME_ZONE."""

from __future__ import annotations

import zoneinfo
from urllib.parse import unquote

from django.http import HttpRequest
from django.utils import timezone

TZ_COOKIE = "rana_tz"


def tz_from(value: str | None) -> zoneinfo.ZoneInfo | None:
    """The zone named `value`; None when it names none."""
    if not value:
        return None
    try:
        return zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def default_tz() -> zoneinfo.ZoneInfo:
    return tz_from(timezone.get_default_timezone_name()) or zoneinfo.ZoneInfo("UTC")


def viewer_tz(request: HttpRequest) -> zoneinfo.ZoneInfo:
    return (
        tz_from(request.GET.get("tz")) or tz_from(unquote(request.COOKIES.get(TZ_COOKIE, ""))) or default_tz()
    )
