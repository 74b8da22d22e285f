"""``GET /docs``: Swagger UI served from this server's own files, or a 404 saying how to turn it on.

FastAPI's own ``/docs`` and ``/redoc`` load their scripts from a CDN (no integrity check, no
policy), so the app turns them off. With ``--docs`` the page, Swagger UI's script and style (from
the fastapi-offline package, which ships Swagger UI 5: the first to read OpenAPI 3.1, FastAPI's
schema version) and the script that starts it are all answered here, under a
Content-Security-Policy that allows this origin only. ``/openapi.json`` is always served.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response

from spanqa.core.errors import ConfigError
from spanqa.interfaces.serve.errors import ApiError

__all__ = ["add_docs_routes", "swagger_ui_folder", "DOCS_CSP"]

# Swagger UI sets inline styles on its elements; its scripts are files of this origin.
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_ASSETS = {"swagger-ui.css": "text/css; charset=utf-8", "swagger-ui-bundle.js": "text/javascript; charset=utf-8"}


def swagger_ui_folder() -> Path:
    """The folder of Swagger UI's files in the fastapi-offline package.

    Raises:
        ConfigError: the package is not installed.
    """
    try:
        import fastapi_offline
    except ImportError:
        raise ConfigError("--docs serves Swagger UI from local files: install them with `pip install fastapi-offline`") from None
    return Path(fastapi_offline.__file__).parent / "static"


def add_docs_routes(app: FastAPI, enabled: bool) -> None:
    """``GET /docs`` and its files when ``enabled``; else ``GET /docs`` is a 404 that says how to turn it on.

    Args:
        app: The app (built with ``docs_url=None, redoc_url=None``).
        enabled: Serve Swagger UI.

    Raises:
        ConfigError: ``enabled`` without the fastapi-offline package.
    """
    if not enabled:

        @app.get("/docs", include_in_schema=False)
        async def docs_off() -> Response:
            raise ApiError(404, "not_found", "the API docs are off: start the server with --docs, or read /openapi.json")

        return
    folder = swagger_ui_folder()
    static = resources.files("spanqa") / "static"
    page, starter = (static / "docs.html").read_text(encoding="utf-8"), (static / "docs.js").read_text(encoding="utf-8")
    headers = {"Content-Security-Policy": DOCS_CSP, "Cache-Control": "no-cache"}

    @app.get("/docs", include_in_schema=False)
    async def docs_page() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)

    @app.get("/docs/init.js", include_in_schema=False)
    async def docs_starter() -> Response:
        return Response(starter, media_type="text/javascript; charset=utf-8", headers=headers)

    for name, media_type in _ASSETS.items():
        _add_asset_route(app, folder / name, media_type)


def _add_asset_route(app: FastAPI, path: Path, media_type: str) -> None:
    """``GET /docs/<name>``: one file of Swagger UI (only the files named in ``_ASSETS``: no folder is exposed)."""

    @app.get(f"/docs/{path.name}", include_in_schema=False)
    async def docs_asset() -> FileResponse:
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "max-age=3600"})
