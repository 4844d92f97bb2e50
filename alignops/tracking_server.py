"""Is the MLflow tracking server there? Asked once, first, before any data or model work.

MLflow's own client retries a refused connection for minutes (seven tries with back-off) and then fails with
chained tracebacks; a pipeline would also validate its data first. `require_reachable` asks the server's
/health with a short timeout, tries again after the pipeline's documented retry delays that fit in 30 s, and
then raises TrackingUnavailable naming the URI. A local store (sqlite:, file:) needs no server and passes at once.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from alignops.errors import TrackingUnavailable

CONNECT_TIMEOUT_S = 5.0  # per try: a silent (firewalled) host costs at most this
RETRY_DELAYS_S = (2.0, 10.0)  # the first of flows.tasks.RETRIES's delays (2, 10, 30 s) that fit in 30 s
HTTP_SCHEMES = ("http://", "https://")
_reachable: set[str] = set()  # URIs that answered in this process: asked once


def require_reachable(uri: str | None = None, delays: tuple[float, ...] = RETRY_DELAYS_S) -> None:
    """Return when the tracking server at `uri` (default: the one alignops uses) answers; else raise
    TrackingUnavailable after 1 + len(delays) tries, naming the URI, what happened and how to fix it."""
    from alignops import tracking

    uri = uri or tracking.tracking_uri()
    if not uri.startswith(HTTP_SCHEMES) or uri in _reachable:
        return
    started = time.monotonic()
    reason = ""
    for delay in (0.0, *delays):
        time.sleep(delay)
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=CONNECT_TIMEOUT_S):
                pass
        except urllib.error.HTTPError:
            pass  # it answered (a proxy in front may refuse /health): the server is there
        except (urllib.error.URLError, OSError) as exc:
            reason = str(getattr(exc, "reason", exc))
            continue
        _reachable.add(uri)
        return
    raise TrackingUnavailable(
        f"The MLflow tracking server at {uri} (MLFLOW_TRACKING_URI) did not answer: {reason}; "
        f"{1 + len(delays)} tries over {time.monotonic() - started:.0f} s. Start it (`mlflow server --host "
        "127.0.0.1 --port 5000`), correct MLFLOW_TRACKING_URI, or unset it to track in SQLite under ALIGNOPS_HOME. "
        "Nothing was run."
    )
