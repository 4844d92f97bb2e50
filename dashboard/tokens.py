"""Signed, expiring session tokens: what keeps a labeler signed in across a reload and a new tab.

A token is "<annotator id>.<issued at, unix s>.<HMAC-SHA256 of both>" kept in a browser cookie; the key is
ALIGNOPS_SESSION_SECRET (environment, or .streamlit/secrets.toml, never the repository). Without one, each
dashboard process draws a random key: sessions then survive reloads and new tabs but not a restart.

    token = issue(7, secret, now=time.time())
    verify(token, secret, now=time.time(), max_age_s=IDLE_S)  ->  7, or None (forged, malformed or expired)
"""

from __future__ import annotations

import hashlib
import hmac

IDLE_S = 30 * 60  # a session idle this long signs out; a token older than this is refused
REFRESH_S = 5 * 60  # a token this old is replaced by a fresh one on the next action (so activity extends it)


def _signature(payload: str, secret: bytes) -> str:
    return hmac.new(secret, payload.encode("ascii"), hashlib.sha256).hexdigest()


def issue(annotator_id: int, secret: bytes, now: float) -> str:
    payload = f"{int(annotator_id)}.{int(now)}"
    return f"{payload}.{_signature(payload, secret)}"


def issued_at(token: str) -> int | None:
    """When a (verified) token was issued, or None when it is malformed."""
    parts = token.split(".")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def verify(token: str | None, secret: bytes, now: float, max_age_s: float = IDLE_S) -> int | None:
    """The annotator id of a token this secret signed less than max_age_s ago, else None."""
    parts = (token or "").split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    payload = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(_signature(payload, secret), parts[2]):
        return None
    if not 0 <= now - int(parts[1]) < max_age_s:
        return None
    return int(parts[0])
