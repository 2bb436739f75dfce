"""Serving the app with uvicorn on a socket we bind ourselves.

Binding first gives a clean "port in use" error (no uvicorn traceback) and, for port 0, the
real port before the server starts.
"""

from __future__ import annotations

import socket

import uvicorn

from .app import create_app
from .config import StandinConfig


class PortInUse(OSError):
    pass


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUse(str(exc)) from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def make_server(settings: StandinConfig) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(settings),
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
    )
    return uvicorn.Server(config)
