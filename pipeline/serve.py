"""``python -m pipeline.serve [checkpoint=MODEL] [method=ours] [host=127.0.0.1] [port=8000]``

Starts the web page and HTTP API of :mod:`pipeline.web.server` with uvicorn and prints its address.
Without ``checkpoint=`` the model that ships with the package repairs; ``method=<another system>
checkpoint=RUN`` puts that system's trained stage in the IPN's place, as ``pipeline.inpaint`` does
(:func:`~pipeline.inference.inpainter.build_inpainter`). It answers only on
``host`` (loopback by default) and only to requests naming a loopback address or one of
``allowed_hosts`` (needed, with ``host=0.0.0.0``, to be reached from other machines). A model that
fails to load does not stop the server: the page and ``/api/health`` say why.
"""

from __future__ import annotations

import errno
import logging
import socket

from omegaconf import DictConfig

from common.cli import command
from common.errors import ConfigError
from pipeline.inference.inpainter import (
    OURS,
    BlindInpainter,
    InpaintSettings,
    build_inpainter,
    check_method,
    resolve_device,
)
from pipeline.model import SHIPPED_MODEL
from pipeline.web.server import LOCAL_HOSTS, ServerLimits, create_app

log = logging.getLogger("pipeline.serve")

WILDCARDS = ("0.0.0.0", "::", "")


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (``port=0``: a free one), or a one-line error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        reason = (
            "is in use: choose another with port=..."
            if err.errno == errno.EADDRINUSE
            else f"cannot be used ({err.strerror})"
        )
        raise ConfigError(f"{host}:{port} {reason}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in WILDCARDS else host
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def serve_app(cfg: DictConfig):
    """The application and its limits from the command's config (the model is loaded here)."""
    if not 0 <= cfg.port <= 65535:
        raise ConfigError(f"port must be in 0..65535, got {cfg.port}")
    for key in ("max_upload_mb", "max_megapixels", "max_queue"):
        if cfg[key] <= 0:
            raise ConfigError(f"{key} must be > 0, got {cfg[key]}")
    hosts = tuple(str(h) for h in cfg.allowed_hosts)
    if cfg.host not in (*LOCAL_HOSTS, *WILDCARDS, *hosts):
        hosts = (*hosts, cfg.host)
    limits = ServerLimits(
        max_upload_bytes=int(cfg.max_upload_mb * 2**20),
        max_pixels=int(cfg.max_megapixels * 1e6),
        max_queue=cfg.max_queue,
        allowed_hosts=hosts,
    )
    settings = InpaintSettings.from_config(cfg)
    device = resolve_device(cfg.device)

    check_method(cfg.method, cfg.checkpoint, cfg.mask_checkpoint)  # a wrong choice stops the command, not the page

    def load() -> BlindInpainter:
        return build_inpainter(cfg.method, cfg.checkpoint, cfg.mask_checkpoint, settings, device, **cfg.pipeline)

    name = str(cfg.checkpoint) if cfg.checkpoint else SHIPPED_MODEL.stem
    if cfg.method != OURS:
        name = f"{cfg.method}: {name}"
    return create_app(load, model_name=name, limits=limits), limits


@command("serve", "inference")
def main(cfg: DictConfig) -> None:
    import uvicorn

    sock = listening_socket(cfg.host, cfg.port)  # before the model loads: a busy port fails at once
    app, limits = serve_app(cfg)
    queue = app.state.queue
    if queue.load_error:
        log.error("the model failed to load (the page says so): %s", queue.load_error)
    if cfg.host in WILDCARDS and not limits.allowed_hosts:
        log.warning("host=%s listens everywhere, but only loopback names are answered: set allowed_hosts", cfg.host)
    port = sock.getsockname()[1]
    print(f"blindfill is serving on {url_of(cfg.host, port)}  (Ctrl+C stops it)", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
