"""Who may use the server: allowed ``Host`` names, an optional API key, and safe headers on every response.

* Hosts: a browser lets a page of ``attacker.example`` read a server on this machine once that
  name resolves to 127.0.0.1 (DNS rebinding); its requests still say ``Host: attacker.example``.
  Bound to a loopback address, the server answers only the local names (``localhost``,
  ``127.0.0.1``, ``[::1]``, any port) and those given with ``--allowed-hosts``; bound to another
  address it answers any ``Host`` unless ``--allowed-hosts`` names them (with a warning: a server
  reached by many names cannot guess them). Others get 400 ``invalid_host``.
* API key: when set (``--api-key-file`` or ``SPANQA_API_KEY``), every request other than GET, HEAD
  and OPTIONS needs ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (else 401). GET stays open,
  so the web page loads and asks for the key.
* Headers: ``X-Content-Type-Options: nosniff`` on every response, and a Content-Security-Policy
  that allows nothing on every response that brings none of its own (the pages set stricter ones).

:func:`create_app` without an :class:`AccessOptions` restricts no host and needs no key (a library
user decides); :func:`~.server.run_server` builds the options from its bind address with
:func:`bind_access`.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spanqa.core.errors import ConfigError
from spanqa.core.io import describe_os_error
from spanqa.interfaces.serve.connections import RequestLimitMiddleware
from spanqa.interfaces.serve.errors import error_response

__all__ = [
    "AccessOptions", "access_options", "bind_access", "add_access_guards", "secure_every_response", "is_loopback",
    "LOCAL_HOSTS", "API_KEY_ENV", "DEFAULT_CSP",
]

logger = logging.getLogger(__name__)

API_KEY_ENV = "SPANQA_API_KEY"  # not SPANQA_SERVE_*: those are the numeric ServeSettings, and a secret is no setting
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")
# For JSON and every other response without a policy of its own: nothing may load, frame or submit.
DEFAULT_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # OPTIONS: a CORS preflight never carries the key
# What --allowed-hosts takes: *, a name (optionally *. before it: its subdomains) or a bracketed IPv6 address.
_HOST_PATTERN = re.compile(r"\*|(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?|\[[0-9a-f:.]+\]")


@dataclass(frozen=True)
class AccessOptions:
    """Who may use the server, and whether ``/docs`` is served.

    Attributes:
        allowed_hosts: The ``Host`` names answered (``*.example.com`` matches subdomains, ``*`` any);
            None: any.
        api_key: The key every POST must bring (None: no key).
        docs: Serve Swagger UI at ``/docs`` from local files (needs the fastapi-offline package).
    """

    allowed_hosts: tuple[str, ...] | None = None
    api_key: str | None = field(default=None, repr=False)
    docs: bool = False


def access_options(allowed_hosts: str | None = None, api_key_file: str | os.PathLike[str] | None = None, docs: bool = False,
                   environ: Mapping[str, str] | None = None) -> AccessOptions:
    """:class:`AccessOptions` from the command line's values and the environment.

    Args:
        allowed_hosts: Comma-separated host names (``--allowed-hosts``).
        api_key_file: A file whose first line is the API key (``--api-key-file``); beats ``SPANQA_API_KEY``.
        docs: Serve ``/docs``.
        environ: Where ``SPANQA_API_KEY`` is read (default: ``os.environ``).

    Raises:
        ConfigError: a malformed host name, an unreadable or empty key file, or a key with spaces or non-ASCII.
    """
    hosts = _parse_hosts(allowed_hosts) if allowed_hosts is not None else None
    if api_key_file is not None:
        key: str | None = _read_key_file(Path(api_key_file))
        where = f"--api-key-file {api_key_file}"
    else:
        key = (environ if environ is not None else os.environ).get(API_KEY_ENV, "").strip() or None
        where = API_KEY_ENV
    if key is not None and not all(33 <= ord(char) <= 126 for char in key):
        raise ConfigError(f"{where}: the API key must be printable ASCII without spaces (it travels in an HTTP header)")
    return AccessOptions(hosts, key, docs)


def _parse_hosts(text: str) -> tuple[str, ...]:
    """``a.example, *.b.example, [::1]:8000`` -> ``("a.example", "*.b.example", "[::1]")`` (ports dropped)."""
    hosts = []
    for item in (part.strip().lower() for part in text.split(",")):
        name = item if item.startswith("*") else _host_name(item)
        if name is None or not _HOST_PATTERN.fullmatch(name):
            raise ConfigError(f"--allowed-hosts: {item!r} is not a host name (give names like qa.example.com, *.example.com or *)")
        hosts.append(name)
    return tuple(hosts)


def _read_key_file(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        detail = describe_os_error(err) if isinstance(err, OSError) else "not UTF-8 text"
        raise ConfigError(f"--api-key-file {path}: cannot read the key: {detail}") from None
    key = lines[0].strip() if lines else ""
    if not key:
        raise ConfigError(f"--api-key-file {path}: the file is empty; write the key on its first line")
    return key


def _host_name(header: str) -> str | None:
    """The host of a ``Host`` header (``name``, ``name:port``, ``[v6]``, ``[v6]:port``), lower case; None if malformed."""
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        rest = header[end + 1 :]
        return header[: end + 1] if end > 1 and (not rest or rest[1:].isdigit() and rest[0] == ":") else None
    name, colon, port = header.partition(":")
    if not name or ":" in port or (colon and not port.isdigit()):
        return None
    return name


def is_loopback(host: str) -> bool:
    """Whether a bind address is this machine only (``localhost``, ``127.0.0.0/8``, ``::1``).

    Args:
        host: The address the server listens on.
    """
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def bind_access(host: str, access: AccessOptions) -> AccessOptions:
    """The options that hold on ``host``: local names only on loopback; warnings where the server is exposed.

    Local names are always allowed when a list is in force: a DNS-rebinding page's requests carry
    its own name, never ``localhost``.

    Args:
        host: The address the server listens on.
        access: The options asked for (``allowed_hosts`` None: not given).
    """
    given = access.allowed_hosts
    bound = f"[{host}]" if ":" in host and not host.startswith("[") else host.lower()
    if is_loopback(host):
        return replace(access, allowed_hosts=_unique((*LOCAL_HOSTS, bound, *(given or ()))))
    if access.api_key is None:
        logger.warning("serving on %s without an API key: anyone who can reach this port can use the model; "
                       "set one with --api-key-file or %s", host, API_KEY_ENV)
    if given is None:
        logger.warning("serving on %s for any Host name: name yours with --allowed-hosts so that web pages "
                       "elsewhere cannot reach this server through DNS rebinding", host)
        return access
    return replace(access, allowed_hosts=_unique((*LOCAL_HOSTS, *given)))


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


class HostCheckMiddleware(TrustedHostMiddleware):
    """Starlette's TrustedHostMiddleware (its patterns: exact, ``*.suffix``, ``*``) answering with the API's JSON error.

    No www-redirect: a wrong name is refused, never sent elsewhere.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...]) -> None:
        super().__init__(app, allowed_hosts=list(allowed_hosts), www_redirect=False)

    def _allows(self, host: str | None) -> bool:
        return host is not None and any(host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:]))
                                        for pattern in self.allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allow_any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("host")
        if self._allows(_host_name(header) if header is not None else None):
            await self.app(scope, receive, send)
            return
        shown = "none" if header is None else repr(header[:100])
        names = ", ".join(name for name in self.allowed_hosts if name != "::1")
        message = (f"Host {shown} is not served here; this server answers {names}. "
                   "Start it with --allowed-hosts NAME[,NAME...] to answer other names")
        scope.setdefault("state", {})["spanqa_error_type"] = "invalid_host"  # for the metrics
        await error_response(400, "invalid_host", message)(scope, receive, send)


class ApiKeyMiddleware:
    """Every request but GET, HEAD and OPTIONS needs the key: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.key = key.encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in _SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        given = _presented_key(Headers(scope=scope))
        if given is not None and hmac.compare_digest(given, self.key):  # constant time: no guessing byte by byte
            await self.app(scope, receive, send)
            return
        problem = "no API key was sent" if given is None else "wrong API key"
        message = f"{problem}: this server needs its key as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
        scope.setdefault("state", {})["spanqa_error_type"] = "unauthorized"
        response = error_response(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="spanqa"'})
        await response(scope, receive, send)


def _presented_key(headers: Headers) -> bytes | None:
    """The key a request brings (its ``X-API-Key``, else its bearer token), as the bytes sent."""
    key = headers.get("x-api-key")
    if key is None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return key.encode("latin-1") if key is not None else None


class SecurityHeadersMiddleware:
    """``X-Content-Type-Options: nosniff`` on every response, and :data:`DEFAULT_CSP` where a response has no policy."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=list(message.get("headers", [])))
                headers.setdefault("x-content-type-options", "nosniff")
                headers.setdefault("content-security-policy", DEFAULT_CSP)
                message = {**message, "headers": headers.raw}
            await send(message)

        await self.app(scope, receive, send_secured)


def add_access_guards(app: FastAPI, access: AccessOptions, max_requests: int) -> None:
    """The host check, then the API key, then the cap on requests in flight, outside the app's routes.

    Call it before the metrics middleware is added, so that refusals are counted.

    Args:
        app: The app.
        access: Allowed hosts and API key.
        max_requests: Most requests handled at once.
    """
    app.add_middleware(RequestLimitMiddleware, limit=max_requests)  # innermost: only requests that may run take a slot
    if access.api_key is not None:
        app.add_middleware(ApiKeyMiddleware, key=access.api_key)
    if access.allowed_hosts is not None and "*" not in access.allowed_hosts:
        app.add_middleware(HostCheckMiddleware, allowed_hosts=access.allowed_hosts)


def secure_every_response(app: FastAPI) -> None:
    """Wrap the whole middleware stack in :class:`SecurityHeadersMiddleware`.

    Outside Starlette's ServerErrorMiddleware too, which answers the 500s itself: an added
    middleware would sit inside it and miss them.

    Args:
        app: The app.
    """
    build = app.build_middleware_stack

    def build_secured() -> ASGIApp:
        return SecurityHeadersMiddleware(build())

    app.build_middleware_stack = build_secured  # type: ignore[method-assign]
