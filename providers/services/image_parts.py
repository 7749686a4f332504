"""Images in a request, checked on the way in: what RANA will carry, and what it refuses at once.

An image part is OpenAI's `{"type": "image_url", "image_url": {"url": ..., "detail": ...}}`
(a bare string `image_url` is read too). Two kinds of URL are accepted:

- `data:image/<png|jpeg|gif|webp>;base64,<data>`: decoded here; the declared type must be
  one of those four and match the bytes (magic numbers), and the decoded size must not
  exceed RANA_IMAGE_MAX_BYTES. The part then carries its media type and base64 data, so
  every protocol can send it inline without decoding again.
- `http://` or `https://` URLs: no credentials, and no host that names a private, loopback,
  link-local or metadata address literally (in any spelling) or is `localhost` / `*.localhost`
  / `*.internal`, unless the host is listed in RANA_ALLOWED_IMAGE_HOSTS. Such a URL is
  refused before any step is tried: RANA never fetches it and never hands it to a provider.
  A DNS name is resolved only if RANA has to fetch the image itself (image_fetch.py), by the
  guarded resolver, which refuses the same addresses at connect time.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from providers.engine.types import ImagePart
from providers.url_safety import IMAGE_ALLOWLIST, UnsafeUpstreamURL, check_upstream_url, is_allowed_host

from .input_errors import InvalidRequest

MEDIA_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
DETAILS = ("auto", "low", "high")
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)(?P<params>(;[\w.+-]+=[\w.+-]+)*);base64,", re.I)
_LOCAL_NAMES = ("localhost", ".localhost", ".internal", ".local")


def sniff_media_type(head: bytes) -> str | None:
    """The image type the bytes say they are (magic numbers), or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def max_image_bytes() -> int:
    return int(settings.RANA_IMAGE_MAX_BYTES)


def _data_url(url: str, where: str) -> tuple[str, str]:
    match = _DATA_URL.match(url)
    if match is None:
        raise InvalidRequest(where, "a data: URL must look like data:image/png;base64,<data>")
    declared = match["type"].lower()
    if declared == "image/jpg":
        declared = "image/jpeg"
    if declared not in MEDIA_TYPES:
        raise InvalidRequest(where, f"image type {declared!r} is not supported (png, jpeg, gif or webp)")
    encoded = url[match.end() :].strip()
    limit = max_image_bytes()
    if len(encoded) > (limit + 2) // 3 * 4 + 4:
        raise InvalidRequest(where, f"the image is larger than the {limit:,}-byte limit")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(where, "the data: URL is not valid base64") from None
    if len(raw) > limit:
        raise InvalidRequest(where, f"the image is larger than the {limit:,}-byte limit")
    actual = sniff_media_type(raw[:16])
    if actual is None:
        raise InvalidRequest(where, "the data is not a png, jpeg, gif or webp image")
    if actual != declared:
        raise InvalidRequest(where, f"the data is {actual}, not {declared} as declared")
    return declared, base64.b64encode(raw).decode("ascii")


def _local_name(host: str) -> bool:
    host = host.lower().rstrip(".")
    return host == "localhost" or host.endswith(_LOCAL_NAMES)


def check_image_url(url: str, where: str) -> None:
    """Refuse an http(s) image URL that names a non-public host; InvalidRequest says why."""
    allowed = list(settings.RANA_ALLOWED_IMAGE_HOSTS)
    try:
        check_upstream_url(url, allowed_hosts=allowed, resolve_dns=False, setting=IMAGE_ALLOWLIST)
    except UnsafeUpstreamURL as exc:
        raise InvalidRequest(where, f"image URL refused: {exc}") from None
    host = urlsplit(url).hostname or ""
    if _local_name(host) and not is_allowed_host(host, allowed):
        raise InvalidRequest(where, f"image URL refused: host '{host}' is a local name")


def image_part(raw: Mapping[str, Any], where: str) -> ImagePart:
    """One `image_url` content part, checked; raises InvalidRequest naming the field."""
    spec = raw.get("image_url")
    if isinstance(spec, str):
        spec = {"url": spec}
    if not isinstance(spec, Mapping) or not isinstance(spec.get("url"), str) or not spec["url"]:
        raise InvalidRequest(f"{where}.image_url", "needs a url (https:// or data:image/...;base64,)")
    url, detail = spec["url"].strip(), spec.get("detail")
    if detail is not None and detail not in DETAILS:
        raise InvalidRequest(f"{where}.image_url.detail", "must be auto, low or high")
    if url[:5].lower() == "data:":
        media_type, data = _data_url(url, f"{where}.image_url.url")
        return ImagePart(url=url, detail=detail, media_type=media_type, data=data)
    if not url.lower().startswith(("http://", "https://")):
        raise InvalidRequest(f"{where}.image_url.url", "must be an http(s) URL or a data:image/... URL")
    check_image_url(url, f"{where}.image_url.url")
    return ImagePart(url=url, detail=detail)
