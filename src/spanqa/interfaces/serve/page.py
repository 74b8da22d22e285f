"""The web pages: the question-answering page at ``GET /`` and the model's ``spanqa report`` at ``GET /report``."""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources
from pathlib import Path

from spanqa.jobs.evaluation_files import REPORT_NAME
from spanqa.runtime.models import MODEL_ALIASES

__all__ = ["load_page", "page_headers", "REPORT_HEADERS", "REPORT_MARKER", "report_file", "is_report", "read_report"]

# jobs/report.py (render_html) writes this into the head of every report; no other file is served as one.
REPORT_MARKER = '<meta name="generator" content="spanqa report'
_REPORT_HEAD_BYTES = 2048  # the marker is in the head, before the style
_MAX_REPORT_BYTES = 64 * 1024 * 1024  # figures are inlined as data URIs: a few MB at most

# The report has no script; its figures are data URIs and its style is inline.
REPORT_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def load_page() -> tuple[str, str]:
    """The page and a Content-Security-Policy allowing only its own inline script and style."""
    html = (resources.files("spanqa") / "static" / "index.html").read_text(encoding="utf-8")

    def hashes(tag: str) -> str:
        found = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(body.encode('utf-8')).digest()).decode()}'" for body in found)

    scripts, styles = hashes("script") or "'none'", hashes("style") or "'none'"
    csp = (
        f"default-src 'none'; script-src {scripts}; style-src {styles}; connect-src 'self'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return html, csp


def page_headers(csp: str) -> dict[str, str]:
    """The response headers of the page: its Content-Security-Policy, no sniffing, no referrer, revalidated.

    Args:
        csp: The page's Content-Security-Policy (from :func:`load_page`).
    """
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def report_file(model: str | None) -> Path | None:
    """Where a local model folder's ``spanqa report`` is: an absolute path, fixed when the server starts.

    Resolved once, so a later change of working directory cannot make ``/report`` read another
    folder's file. None for an alias or a hub id (no folder of the user's).

    Args:
        model: The model's name as given to the server (a folder, alias or hub id).
    """
    if not model or model in MODEL_ALIASES:
        return None
    folder = Path(model).expanduser()
    return folder.resolve() / REPORT_NAME if folder.is_dir() else None


def _report_head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(_REPORT_HEAD_BYTES)


def is_report(path: Path | None) -> bool:
    """Whether ``path`` is a report ``spanqa report`` wrote (by its generator marker).

    Args:
        path: The file (None: there is none).
    """
    try:
        return path is not None and path.is_file() and REPORT_MARKER.encode() in _report_head(path)
    except OSError:  # unreadable, or removed meanwhile
        return False


def read_report(path: Path | None) -> str | None:
    """The report's HTML, or None if ``path`` is missing, unreadable, too big or not a spanqa report.

    Args:
        path: The file (None: there is none).
    """
    if not is_report(path):
        return None
    assert path is not None  # is_report said so
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_REPORT_BYTES + 1)
    except OSError:
        return None
    if len(data) > _MAX_REPORT_BYTES or REPORT_MARKER.encode() not in data[:_REPORT_HEAD_BYTES]:
        return None  # too big, or replaced by another file since the check
    return data.decode("utf-8", errors="replace")
