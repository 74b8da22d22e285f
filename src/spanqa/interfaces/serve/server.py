"""Running the server: load a model (and an index) and serve the app with uvicorn.

uvicorn runs with :func:`~.connections.guarded_protocol` (header deadline, connection cap) and the
app with the :class:`~.access.AccessOptions` that hold on the bind address (:func:`~.access.bind_access`).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from spanqa.interfaces.serve.access import AccessOptions, access_options, bind_access
from spanqa.interfaces.serve.app import create_app
from spanqa.interfaces.serve.connections import ConnectionLimits, fit_open_files, guarded_protocol
from spanqa.interfaces.serve.docs import swagger_ui_folder
from spanqa.interfaces.serve.extras import MissingDependencyError
from spanqa.interfaces.serve.settings import ServeSettings, serve_settings
from spanqa.reading.index import Index
from spanqa.reading.reader import Reader
from spanqa.runtime.devices import usable_cores
from spanqa.runtime.options import LoadOptions

__all__ = ["run_server", "uvicorn_options"]

logger = logging.getLogger(__name__)


def uvicorn_options(settings: ServeSettings) -> dict[str, Any]:
    """The uvicorn options (for ``uvicorn.run`` or ``uvicorn.Config``) that apply ``settings`` to connections.

    Each call makes a new guarded protocol class, with its own count of connections: one call per server.
    uvicorn's ``limit_concurrency`` stays off: it counts idle connections too, so idle sockets
    would get real clients 503s; the guard evicts idle connections instead.

    Args:
        settings: The server settings; ``keep_alive_timeout_s`` closes idle keep-alive connections,
            ``header_timeout_s`` connections slow to send a request's headers, and ``max_connections``
            caps open connections.
    """
    limits = ConnectionLimits(settings.header_timeout_s, settings.max_connections)
    return {"timeout_keep_alive": settings.keep_alive_timeout_s, "server_header": False, "http": guarded_protocol(limits)}


def run_server(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServeSettings | None = None,
    *,
    load: LoadOptions | None = None,
    log_level: str = "info",
    index: str | os.PathLike[str] | Index | None = None,
    access: AccessOptions | None = None,
) -> None:
    """Load ``model`` (safetensors or ONNX only, no remote code) and serve it with uvicorn until interrupted.

    Args:
        model: Model folder, alias or hub id.
        host: Address to listen on.
        port: Port.
        settings: Limits, batching and parallelism; default: :func:`~.settings.serve_settings` (the environment).
        load: Device, backend, precision and batch size, passed to :meth:`Reader.from_pretrained`
            (default: :class:`~spanqa.runtime.options.LoadOptions`, the reader's choices).
        log_level: uvicorn's log level.
        index: A ``spanqa index`` folder (or a loaded :class:`~spanqa.reading.index.Index`) to answer questions
            sent without a context from.
        access: Allowed ``Host`` names, API key and ``/docs`` (default: :func:`~.access.access_options`,
            the key from ``SPANQA_API_KEY``). Bound to loopback, only local names and the
            ``allowed_hosts`` given are answered; bound elsewhere without ``allowed_hosts``, any.

    Raises:
        DataError: ``index`` is not a readable index folder (found before the model loads).
        ConfigError: ``access.docs`` without the fastapi-offline package (found before the model loads).
    """
    try:
        import uvicorn
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise MissingDependencyError.of(err) from err
    settings = settings or serve_settings()
    access = bind_access(host, access or access_options())
    if access.docs:
        swagger_ui_folder()  # missing files fail now, not after a model load
    if index is not None:
        index = Index.open(index)  # before the model: a wrong folder fails in a moment, not after a model load
        logger.info("index %s: %d passages of %d documents", index.folder, len(index.passages), index.manifest.get("documents", 0))
    started = time.perf_counter()
    reader = Reader.from_pretrained(model, load)
    logger.info("loaded %s on %s in %.1f s", model, reader.device, time.perf_counter() - started)
    if index is not None and index.default_method != "bm25":
        index.search("warm-up", 1)  # loads the index's embedding model now rather than in the first request's time
    app = create_app(reader, settings, model_name=str(model), index=index, access=access)
    batcher = app.state.batcher
    logger.info("%d micro-batch worker(s), %d intra-op thread(s) each (%d usable cores)", batcher.workers, batcher.threads, usable_cores())
    settings = settings.model_copy(update={"max_connections": fit_open_files(settings.max_connections)})
    uvicorn.run(app, host=host, port=port, log_level=log_level, **uvicorn_options(settings))
