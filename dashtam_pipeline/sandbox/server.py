"""Serve the sandbox over real HTTP on loopback: in a background thread for tests
(``serve``), or in the foreground for ``dashtam sandbox serve`` (``serve_forever``).

A threaded ``wsgiref`` server, so a delayed request does not hold up the others. A
``reset_connection`` fault closes the socket without writing a response. Access lines are
logged without query strings, because API keys travel there.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import Any, TextIO
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from dashtam_pipeline.errors import PipelineError
from dashtam_pipeline.registry import get_provider_metadata
from dashtam_pipeline.sandbox.app import PROVIDERS, SandboxApp
from dashtam_pipeline.sandbox.faults import ConnectionResetFault

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765


class _ResetAwareHandler(ServerHandler):
    """Writes nothing when the app asked for the connection to be dropped."""

    reset_requested = False

    def handle_error(self) -> None:
        if isinstance(sys.exc_info()[1], ConnectionResetFault):
            self.reset_requested = True
            return
        super().handle_error()


class _RequestHandler(WSGIRequestHandler):
    def handle(self) -> None:
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536 or not self.parse_request():
            return
        handler = _ResetAwareHandler(
            self.rfile, self.wfile, self.get_stderr(), self.get_environ(),
            multithread=True,
        )
        handler.request_handler = self  # type: ignore[attr-defined]
        handler.run(self.server.get_app())  # type: ignore[attr-defined]
        if handler.reset_requested:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = self.path.split("?", 1)[0]
        log.info('"%s %s" %s %s', self.command, path, code, size)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class SandboxServer:
    """A running loopback server; ``stop()`` (or leaving the ``with``) shuts it down."""

    def __init__(self, httpd: _ThreadingServer, app: SandboxApp) -> None:
        self.httpd = httpd
        self.app = app
        self.host = str(httpd.server_address[0])
        self.port = int(httpd.server_address[1])
        self._thread = threading.Thread(
            target=httpd.serve_forever, name=f"sandbox-{self.port}", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def base_url(self, slug: str) -> str:
        """Where this server answers one provider (``<url>/<slug>`` + its real path)."""
        from dashtam_pipeline.clients.base import sandbox_base_url

        return sandbox_base_url(slug, self.url)

    def start(self) -> SandboxServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.app.clear_faults()  # wake delayed handlers so nothing lingers
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SandboxServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _make_server(host: str, port: int, app: SandboxApp) -> _ThreadingServer:
    """Bind ``host:port``, or raise ``PipelineError`` with one sentence naming both: a
    port out of range (``OverflowError``), a host that does not resolve
    (``socket.gaierror``), a port in use or not ours to bind (``OSError``) are what a
    person typed, not bugs, and must not end as "unexpected error: gaierror"."""
    try:
        httpd = _ThreadingServer((host, port), _RequestHandler)
    except (OverflowError, OSError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise PipelineError(f"cannot serve the sandbox on host {host!r} port {port}: "
                            f"{reason.rstrip('.')}") from None
    httpd.set_app(app)
    return httpd


def serve(host: str = "127.0.0.1", port: int = 0, app: SandboxApp | None = None) -> SandboxServer:
    """Start a server in a background thread (``port=0`` picks a free port)."""
    app = app or SandboxApp()
    return SandboxServer(_make_server(host, port, app), app).start()


def environment_lines(root: str) -> list[str]:
    """The variables that point a real (non-sandbox) pipeline at this server."""
    from dashtam_pipeline.clients.base import sandbox_base_url

    lines = []
    for slug in PROVIDERS:
        meta = get_provider_metadata(slug)
        lines.append(f"{meta.env_prefix}_BASE_URL={sandbox_base_url(slug, root)}")
        lines += [f"{name.upper()}=sandbox" for name in meta.required_settings]
    lines.append(f"SCHWAB_CALLBACK_URL={root}/_sandbox/callback")
    return lines


def serve_forever(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    app: SandboxApp | None = None,
    out: TextIO | None = None,
) -> None:
    """Serve in the foreground until interrupted, after printing where and how to use it."""
    out = out or sys.stdout
    app = app or SandboxApp()
    httpd = _make_server(host, port, app)
    root = f"http://{httpd.server_address[0]}:{httpd.server_address[1]}"
    print(f"Dashtam sandbox serving on {root} (seed {app.seed}, {app.world.users} users: "
          "README \"Many users in the sandbox\")", file=out)
    print("Point the pipeline at it with:", file=out)
    for line in environment_lines(root):
        print(f"  export {line}", file=out)
    out.flush()
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
