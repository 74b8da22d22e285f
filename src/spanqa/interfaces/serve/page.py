"""The web pages: the question-answering page at ``GET /`` and the model's ``spanqa report`` at ``GET /report``."""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

__all__ = ["load_page", "page_headers", "REPORT_HEADERS"]

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
