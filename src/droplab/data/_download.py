"""The one way droplab fetches a data file: by URL, checked against a SHA-256 written in droplab."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from collections.abc import Callable

from droplab.errors import DataError


def fetch_verified(
    url: str,
    sha256: str,
    *,
    what: str,
    hint: str,
    timeout: float = 60.0,
    content: Callable[[bytes], bytes] | None = None,
) -> bytes:
    """The bytes at ``url``, once their SHA-256 (of ``content(payload)`` if given) is ``sha256``.

    Raises:
        DataError: the request failed (``could not download {what} file {url}: ...; {hint}``)
            or the digest differs (``checksum mismatch for {url}: ...``); nothing is written.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DataError(f"could not download {what} file {url}: {exc}; {hint}") from None
    got = hashlib.sha256(payload if content is None else content(payload)).hexdigest()
    if got != sha256:
        raise DataError(
            f"checksum mismatch for {url}: expected SHA-256 {sha256}, got {got}; the download was discarded"
        )
    return payload
