"""The web page and HTTP API: upload a photo, see the damage found, correct it, repair, download.

:func:`create_app` builds the FastAPI application that ``python -m pipeline.serve`` runs with
uvicorn. The page is static (``pipeline/web/static``: HTML, CSS and one JavaScript module, no build);
the API it calls is usable on its own (README, "Web page and HTTP API")::

    GET  /api/health    model, device, limits, queue
    POST /api/mask      image [mode=blind|denoise] [format=png|json]  -> the damage found
    POST /api/inpaint   image [mask] [mode] [soft] [format=png|jpeg] [quality] [keep_metadata]

The repair is the command line's (:meth:`~pipeline.inference.inpainter.BlindInpainter.inpaint_array`, one
photo at a time, in its own pixels) and its file the same bytes (:func:`pipeline.inference.encode.encode_image`).

Safety: only the Host names of ``allowed_hosts`` are answered (no DNS rebinding) and a request
from another site's page (its ``Origin`` or ``Sec-Fetch-Site``) is refused; uploads are limited
in bytes (while they arrive) and in pixels (from the header, before decoding); model runs go one
at a time through a bounded queue, in a worker thread, so the server keeps answering; nothing is
kept after a response (an upload part over 1 MB spills to Starlette's anonymous, already unlinked
temporary file); the client never names a server path.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import cv2
import numpy as np
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.errors import BlindfillError
from data.io import ImageReadError, image_size, load_array, read_mask, read_metadata, to_pixels
from pipeline.inference.encode import PNG, OutputFormat, encode_image
from pipeline.inference.inpainter import BlindInpainter
from pipeline.inference.large import working_shape
from pipeline.model import MODES

log = logging.getLogger("pipeline.web.server")

WEB = Path(__file__).parent / "static"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class ServerLimits:
    """``max_upload_bytes`` per request, ``max_pixels`` per image, ``max_queue`` model runs
    waiting (more are refused with 503), ``allowed_hosts`` besides the loopback names."""

    max_upload_bytes: int = 100 * 2**20
    max_pixels: int = 50_000_000
    max_queue: int = 8
    allowed_hosts: tuple[str, ...] = field(default_factory=tuple)


class RequestError(Exception):
    """A request the server refuses: ``status`` and a plain sentence for the page."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


# -- ASGI guards: before FastAPI sees the request ------------------------------------------------


def _host_name(value: str) -> str | None:
    try:
        return urlsplit(f"//{value}").hostname
    except ValueError:
        return None


async def _refuse(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LocalRequestsOnly:
    """Answers only requests addressed to an allowed host name, and from no other site.

    A web page elsewhere can make the browser send requests here: with DNS rebinding its own
    name resolves to 127.0.0.1 (the ``Host`` header still says its name), and a plain form post
    needs no CORS permission (its ``Origin`` names the other site)."""

    def __init__(self, app, hosts):
        self.app, self.hosts = app, {h.lower().strip("[]") for h in hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        name = _host_name(host)
        if name is None or name.lower() not in self.hosts:
            return await _refuse(send, 403, f"this server answers only to {', '.join(sorted(self.hosts))}")
        origin = headers.get("origin")
        if (origin is not None and origin.rstrip("/") != f"{scope.get('scheme', 'http')}://{host}") or headers.get(
            "sec-fetch-site"
        ) == "cross-site":
            return await _refuse(send, 403, "requests from other sites are refused")
        return await self.app(scope, receive, send)


class UploadLimit:
    """Refuses a request body over ``limit`` bytes with 413: at once from its Content-Length,
    else as soon as the bytes received pass the limit."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    def message(self) -> str:
        return f"the upload is larger than the server's limit of {self.limit / 2**20:g} MB"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _refuse(send, 413, self.message())
        received = 0
        over = False

        async def counted_receive():
            nonlocal received, over
            if over:
                return {"type": "http.request", "body": b"", "more_body": False}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:  # end the body here; the app's answer is replaced below
                    over = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def checked_send(message):
            if not over:
                return await send(message)
            if message["type"] == "http.response.start":
                await _refuse(send, 413, self.message())

        await self.app(scope, counted_receive, checked_send)


# -- the model, one run at a time ----------------------------------------------------------------


class ModelQueue:
    """The model (or why it failed to load) and its queue: one run at a time, at most
    ``max_waiting`` waiting, each in a worker thread so the event loop keeps answering."""

    def __init__(self, load: Callable[[], BlindInpainter], max_waiting: int):
        self.max_waiting = max_waiting
        self.running = 0
        self.waiting = 0
        self.seconds_per_megapixel: float | None = None
        self._lock = asyncio.Lock()
        try:
            self.inpainter, self.load_error = load(), None
        except BlindfillError as err:
            self.inpainter, self.load_error = None, str(err)
        except Exception as err:  # a model that does not load must not keep the page from explaining it
            log.exception("the model failed to load")
            self.inpainter, self.load_error = None, f"{type(err).__name__}: {err}"

    async def run(self, work: Callable, megapixels: float, timed: bool = False):
        """``work(inpainter)`` in a worker thread, after the runs before it; its errors become
        :class:`RequestError` (400 for a :class:`BlindfillError`, else 500, logged). ``timed``: a
        repair, whose seconds per megapixel ``/api/health`` reports (the page's progress estimate)."""
        if self.inpainter is None:
            raise RequestError(503, f"the model failed to load: {self.load_error}")
        if self.waiting >= self.max_waiting:
            raise RequestError(503, f"the server is busy ({self.waiting} runs waiting); try again in a moment")
        self.waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self.waiting -= 1
        self.running = 1
        try:
            started = time.perf_counter()
            result = await run_in_threadpool(work, self.inpainter)
            if timed:
                rate = (time.perf_counter() - started) / max(megapixels, 0.01)
                old = self.seconds_per_megapixel
                self.seconds_per_megapixel = rate if old is None else 0.5 * (old + rate)
            return result
        except BlindfillError as err:
            raise RequestError(400, str(err)) from None
        except Exception as err:
            log.exception("a model run failed")
            raise RequestError(
                500, f"the model failed on this image ({type(err).__name__}); see the server's log"
            ) from None
        finally:
            self.running = 0
            self._lock.release()


# -- requests ------------------------------------------------------------------------------------


def safe_stem(filename: str | None) -> str:
    """A download name's stem from the client's file name: letters, digits, ``-``, ``_`` only."""
    stem = Path(filename or "photo").stem
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:80] or "photo"


def parse_bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise RequestError(400, f"{name} must be true or false, got {value!r}")


async def read_upload(upload: UploadFile, limits: ServerLimits, what: str = "image") -> bytes:
    data = await upload.read()
    if not data:
        raise RequestError(400, f"the {what} file is empty")
    size = image_size(data)
    if size is None:
        raise RequestError(415, f"{upload.filename or 'the ' + what} is not an image this server can read")
    if size[0] * size[1] > limits.max_pixels:
        raise RequestError(
            413,
            f"the {what} has {size[0]} × {size[1]} = {size[0] * size[1] / 1e6:.1f} megapixels; "
            f"this server takes up to {limits.max_pixels / 1e6:g}",
        )
    return data


def decode(data: bytes, name: str | None) -> np.ndarray:
    try:
        return load_array(data, name or "the image")
    except ImageReadError as err:
        raise RequestError(415, str(err)) from None


PREVIEW = OutputFormat("jpeg", 90, keep_metadata=False)


def data_url(pixels: np.ndarray, output_format: OutputFormat = PNG) -> str:
    """``pixels`` (see :func:`pipeline.inference.encode.as_pixels`) encoded as a ``data:`` URL."""
    encoded = base64.b64encode(encode_image(pixels, output_format)).decode()
    return f"data:{output_format.media_type};base64,{encoded}"


def preview_data_url(image: np.ndarray, size: tuple[int, int]) -> str:
    """The photo at ``size`` ``(h, w)`` as a JPEG data URL (what the page shows: any input format)."""
    if size != image.shape[:2]:
        image = cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA)
    return data_url(image, PREVIEW)


def api_reference(openapi: dict) -> str:
    """An HTML page of the HTTP API from its OpenAPI description (``/api``): each endpoint, what it
    does, its fields and its answers. Nothing is fetched from anywhere (FastAPI's own docs pages
    load their scripts from a CDN, so they are off)."""
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>blindfill HTTP API</title>",
        "<link rel='stylesheet' href='/static/style.css'></head><body class='reference'><main>",
        f"<h1>{esc(openapi['info']['title'])} HTTP API</h1>",
        "<p>Every request comes from this machine (the server refuses other hosts and pages); errors are "
        '<code>{"error": "..."}</code> with a 4xx or 5xx status. The machine-readable description: '
        "<a href='/api/openapi.json'>/api/openapi.json</a>. Back to <a href='/'>the page</a>.</p>",
    ]
    schemas = openapi.get("components", {}).get("schemas", {})
    for path, methods in openapi["paths"].items():
        for method, operation in methods.items():
            parts.append(f"<section><h2><code>{method.upper()} {esc(path)}</code></h2>")
            parts.append(f"<p>{esc(operation.get('description', ''))}</p>")
            body = operation.get("requestBody", {}).get("content", {})
            for content in body.values():
                ref = content["schema"].get("$ref", "").rsplit("/", 1)[-1]
                schema = schemas.get(ref, content["schema"])
                required = set(schema.get("required", []))
                rows = []
                for name, spec in schema.get("properties", {}).items():
                    default = f" (default {spec['default']!r})" if "default" in spec else ""
                    need = "required" if name in required else f"optional{default}"
                    rows.append(
                        f"<tr><td><code>{esc(name)}</code></td><td>{need}</td>"
                        f"<td>{esc(spec.get('description', ''))}</td></tr>"
                    )
                parts.append("<table><tr><th>form field</th><th></th><th></th></tr>" + "".join(rows) + "</table>")
            answers = ", ".join(f"{code} {esc(r.get('description', ''))}" for code, r in operation["responses"].items())
            parts.append(f"<p>Answers: {answers}.</p></section>")
    parts.append("</main></body></html>")
    return "\n".join(parts)


def model_info(inpainter: BlindInpainter | None, name: str) -> dict:
    if inpainter is None:
        return {"name": name, "settings": {}}
    return {"name": name, "settings": inpainter.pipeline.settings()}


def create_app(
    load: Callable[[], BlindInpainter], model_name: str = "blindfill-natural", limits: ServerLimits | None = None
) -> FastAPI:
    """The application: ``load`` builds the inpainter (its failure is reported by the API and the
    page, not raised), ``model_name`` is what ``/api/health`` calls it."""
    limits = limits or ServerLimits()
    app = FastAPI(title="blindfill", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    queue = ModelQueue(load, limits.max_queue)
    app.state.queue = queue

    @app.exception_handler(RequestError)
    async def refused(request: Request, err: RequestError):
        return error_response(err.status, str(err))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        return error_response(err.status_code, str(err.detail).rstrip(".").lower())

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        problems = []
        for problem in err.errors():
            where = ".".join(str(part) for part in problem.get("loc", ())[1:]) or "request"
            problems.append(f"{where}: {problem.get('msg', 'invalid')}")
        return error_response(400, "; ".join(problems))

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=WEB), name="static")

    @app.get("/api", include_in_schema=False)
    async def reference():
        return HTMLResponse(api_reference(app.openapi()), headers={"Cache-Control": "no-cache"})

    @app.get("/api/health")
    async def health():
        """The model loaded (or why it failed to load), the device, the modes, the upload limits,
        the queue, and the measured seconds per megapixel of a repair."""
        inpainter = queue.inpainter
        return {
            "status": "ok" if inpainter is not None else "error",
            "error": queue.load_error,
            "model": model_info(inpainter, model_name),
            "device": str(inpainter.device) if inpainter is not None else None,
            "modes": list(MODES),
            "working_size": inpainter.settings.working_size if inpainter is not None else None,
            "limits": {"max_upload_bytes": limits.max_upload_bytes, "max_pixels": limits.max_pixels},
            "queue": {"running": queue.running, "waiting": queue.waiting},
            "seconds_per_megapixel": queue.seconds_per_megapixel,
        }

    @app.post("/api/mask")
    async def mask(
        image: Annotated[UploadFile, File(description="the photo")],
        mode: Annotated[str, Form()] = "blind",
        format: Annotated[str, Form()] = "png",
        view: Annotated[int, Form(ge=16, le=8192)] = 2048,
    ):
        """The damage the model finds in ``image`` (``mode`` blind or denoise): with ``format=png``
        the mask itself (white = hole, the photo's size); with ``format=json`` the mask and the
        MPN's soft mask as PNG data URLs at most ``view`` px on the long side, a preview, the sizes,
        the share of the photo found damaged and the seconds it took."""
        if mode not in ("blind", "denoise"):
            raise RequestError(400, f"mode must be blind or denoise for a mask, got {mode!r}")
        if format not in ("png", "json"):
            raise RequestError(400, f"format must be png or json, got {format!r}")
        data = await read_upload(image, limits)
        pixels = decode(data, image.filename)
        height, width = pixels.shape[:2]
        size = (height, width) if format == "png" else working_shape(height, width, view)
        started = time.perf_counter()
        found = await queue.run(lambda model: model.mask_array(pixels, mode, size), height * width / 1e6)
        if format == "png":
            name = f"{safe_stem(image.filename)}_mask.png"
            headers = {"Content-Disposition": f'attachment; filename="{name}"'}
            return Response(encode_image(to_pixels(found["mask"], np.uint8)), media_type="image/png", headers=headers)
        return {
            "width": width,
            "height": height,
            "view_width": size[1],
            "view_height": size[0],
            "preview": preview_data_url(pixels, size),
            "mask": data_url(to_pixels(found["mask"], np.uint8)),
            "predicted": data_url(to_pixels(found["predicted_mask"], np.uint8)),
            "hole_fraction": float((found["mask"] > 0.5).mean()),
            "seconds": round(time.perf_counter() - started, 3),
        }

    @app.post("/api/inpaint")
    async def inpaint(
        image: Annotated[UploadFile, File(description="the photo")],
        mask: Annotated[UploadFile | None, File(description="white (or opaque, or pure green) = hole")] = None,
        mode: Annotated[str | None, Form()] = None,
        soft: Annotated[str, Form()] = "false",
        format: Annotated[str, Form()] = "png",
        quality: Annotated[int, Form()] = 95,
        keep_metadata: Annotated[str, Form()] = "true",
    ):
        """The repaired photo (the file itself: ``format`` png, jpeg, webp or avif at ``quality``,
        EXIF and ICC kept unless ``keep_metadata=false``). ``mode`` blind (default without a mask:
        the damage is found), masked (default with ``mask``: a mask file of the photo's size,
        ``soft=true`` keeps a gray mask's weights) or denoise. Headers ``X-Blindfill-Seconds`` and
        ``X-Blindfill-Mode`` say how long it took and what was done."""
        mode = mode or ("masked" if mask is not None else "blind")
        if mode not in MODES:
            raise RequestError(400, f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "masked" and mask is None:
            raise RequestError(400, "mode=masked needs a mask file (white = hole)")
        try:
            output_format = OutputFormat(format, quality, parse_bool(keep_metadata, "keep_metadata"))
        except BlindfillError as err:
            raise RequestError(400, str(err)) from None
        data = await read_upload(image, limits)
        pixels = decode(data, image.filename)
        hole = None
        if mode == "masked":
            mask_data = await read_upload(mask, limits, "mask")
            try:
                hole = read_mask(mask_data, parse_bool(soft, "soft"), mask.filename or "the mask")
            except ImageReadError as err:
                raise RequestError(415, str(err)) from None
            if hole.shape != pixels.shape[:2]:
                raise RequestError(
                    400,
                    f"the mask is {hole.shape[1]} × {hole.shape[0]}, the image {pixels.shape[1]} × {pixels.shape[0]}: "
                    "they must be the same size",
                )
        height, width = pixels.shape[:2]
        started = time.perf_counter()

        def repair(model: BlindInpainter) -> bytes:
            result = model.inpaint_array(pixels, hole, mode, in_place=True, intermediates=False)
            return encode_image(result["output"], output_format, read_metadata(data))

        encoded = await queue.run(repair, height * width / 1e6, timed=True)
        name = f"{safe_stem(image.filename)}_repaired{output_format.suffix}"
        headers = {
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Blindfill-Seconds": f"{time.perf_counter() - started:.3f}",
            "X-Blindfill-Mode": mode,
        }
        return Response(encoded, media_type=output_format.media_type, headers=headers)

    app.add_middleware(UploadLimit, limit=limits.max_upload_bytes)
    app.add_middleware(LocalRequestsOnly, hosts=(*LOCAL_HOSTS, *limits.allowed_hosts))  # the outermost: first
    return app
