"""The HTTP API of the web page (pipeline.web.server, pipeline.serve): what it answers, what it refuses,
its queue, and that it gives the command line's file for the same photo."""

import asyncio
import io
import json
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import numpy as np
import pytest
from conftest import ROOT, write_photo
from fastapi.testclient import TestClient
from PIL import Image, ImageCms

from common.errors import CheckpointError
from pipeline.inference.batch import plan_jobs, run
from pipeline.inference.encode import OutputFormat
from pipeline.inference.inpainter import BlindInpainter, InpaintSettings
from pipeline.web.server import ServerLimits, create_app

BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def shipped():
    return BlindInpainter.from_pretrained(settings=InpaintSettings(working_size=64))


def client_for(inpainter, **limits) -> TestClient:
    return TestClient(create_app(lambda: inpainter, limits=ServerLimits(**limits)), base_url=BASE)


@pytest.fixture(scope="module")
def client(shipped):
    return client_for(shipped)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def photo_bytes(tmp_path, width=64, height=48, seed=0, name="photo.png") -> bytes:
    return write_photo(tmp_path / name, width, height, seed=seed).read_bytes()


def noise_png(width: int, height: int) -> bytes:
    """A PNG that does not compress: about 3 bytes a pixel."""
    return png_bytes(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_health_names_the_model_its_limits_and_the_queue(client):
    body = client.get("/api/health").json()
    assert body["status"] == "ok" and body["error"] is None
    assert body["model"]["name"] == "blindfill-natural" and "hole_threshold" in body["model"]["settings"]
    assert body["modes"] == ["blind", "denoise", "masked"] and body["working_size"] == 64
    assert body["limits"] == {"max_upload_bytes": 100 * 2**20, "max_pixels": 50_000_000}
    assert body["queue"] == {"running": 0, "waiting": 0}


def test_the_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for src in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text):
        assert client.get(src).status_code == 200, src
    assert client.get("/static/../server.py").status_code == 404  # nothing outside pipeline/web


def test_mask_as_png_is_the_pipelines_mask_at_full_size(client, shipped, tmp_path):
    data = photo_bytes(tmp_path, 80, 60)
    response = client.post("/api/mask", files={"image": ("photo.png", data)})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    mask = decoded(response.content)
    assert mask.shape == (60, 80)  # the photo is above working_size 64: found small, resized back
    expected = shipped.mask_array(decoded(data), "blind")["mask"]
    assert np.abs(mask / 255.0 - expected).max() <= 0.5 / 255 + 1e-6


def test_mask_as_json_gives_the_page_a_preview_and_both_masks_at_view_size(client, tmp_path):
    data = photo_bytes(tmp_path, 80, 60)
    body = client.post("/api/mask", files={"image": ("p.png", data)}, data={"format": "json", "view": "40"}).json()
    assert (body["width"], body["height"], body["view_width"], body["view_height"]) == (80, 60, 40, 30)
    for key, kind in (("preview", "jpeg"), ("mask", "png"), ("predicted", "png")):
        header, payload = body[key].split(",", 1)
        assert header == f"data:image/{kind};base64"
        import base64

        assert Image.open(io.BytesIO(base64.b64decode(payload))).size == (40, 30)
    assert 0 <= body["hole_fraction"] <= 1 and body["seconds"] >= 0


def test_a_masked_repair_changes_only_the_pixels_of_the_mask(client, tmp_path):
    data = photo_bytes(tmp_path, 64, 48)
    hole = np.zeros((48, 64), np.uint8)
    hole[10:30, 20:40] = 255
    files = {"image": ("photo.png", data), "mask": ("mask.png", png_bytes(hole))}
    response = client.post("/api/inpaint", files=files)
    assert response.status_code == 200, response.text
    assert response.headers["x-blindfill-mode"] == "masked"
    assert response.headers["content-disposition"] == 'attachment; filename="photo_repaired.png"'
    before, after = decoded(data), decoded(response.content)
    assert after.shape == before.shape
    assert np.array_equal(after[hole == 0], before[hole == 0])
    assert not np.array_equal(after[hole > 0], before[hole > 0])


def test_a_soft_mask_weighs_each_pixel_and_zero_leaves_it_alone(client, tmp_path):
    data = photo_bytes(tmp_path, 64, 48, seed=3)
    weights = np.zeros((48, 64), np.uint8)
    weights[:, 32:] = 128  # half repaired, half kept
    files = {"image": ("p.png", data), "mask": ("m.png", png_bytes(weights))}
    soft = decoded(client.post("/api/inpaint", files=files, data={"soft": "true"}).content)
    hard = decoded(client.post("/api/inpaint", files=files).content)  # thresholded at half: 128 is a hole
    before = decoded(data)
    assert np.array_equal(soft[:, :32], before[:, :32]) and np.array_equal(hard[:, :32], before[:, :32])
    assert not np.array_equal(soft[:, 32:], hard[:, 32:])


def exif_jpeg(path, width=72, height=40):
    """A JPEG taken sideways (EXIF orientation 6), with a camera name and an sRGB profile."""
    write_photo(path.with_suffix(".png"), width, height, seed=5)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "blindfill test camera"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.open(path.with_suffix(".png")).save(path, "JPEG", quality=95, exif=exif, icc_profile=icc)
    return icc


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_the_page_gives_the_command_lines_file_with_the_photos_exif_and_profile(shipped, client, tmp_path, fmt):
    photo = tmp_path / "in" / "sideways.jpg"
    photo.parent.mkdir()
    icc = exif_jpeg(photo)
    output_format = OutputFormat(fmt, 90)
    jobs = plan_jobs(photo, tmp_path / "out", None, "blind", output_format.suffix)
    run(shipped, jobs, "blind", progress=False, output_format=output_format)
    from_cli = jobs[0].target.read_bytes()
    form = {"format": fmt, "quality": "90"}
    response = client.post("/api/inpaint", files={"image": ("sideways.jpg", photo.read_bytes())}, data=form)
    assert response.status_code == 200 and response.headers["content-type"] == f"image/{fmt}"
    assert response.content == from_cli
    result = Image.open(io.BytesIO(from_cli))
    assert result.size == (40, 72)  # turned upright, as the repair saw it
    assert result.getexif()[0x0112] == 1 and result.getexif()[0x010F] == "blindfill test camera"
    assert result.info["icc_profile"] == icc
    plain = client.post(
        "/api/inpaint", files={"image": ("s.jpg", photo.read_bytes())}, data={**form, "keep_metadata": "false"}
    )
    stripped = Image.open(io.BytesIO(plain.content))
    assert "icc_profile" not in stripped.info and 0x010F not in stripped.getexif()


@pytest.mark.parametrize(
    ("files", "form", "status", "words"),
    [
        ({"image": ("notes.txt", b"just some text")}, {}, 415, "notes.txt is not an image"),
        ({"image": ("empty.png", b"")}, {}, 400, "empty"),
        ({}, {}, 400, "image: Field required"),
        ("photo", {"mode": "masked"}, 400, "mode=masked needs a mask"),
        ("photo", {"mode": "sharpen"}, 400, "mode must be one of"),
        ("photo", {"format": "gif"}, 400, "format must be one of"),
        ("photo", {"quality": "0"}, 400, "quality must be a whole number in 1..100"),
        ("photo", {"quality": "high"}, 400, "quality"),
        ("photo", {"keep_metadata": "maybe"}, 400, "keep_metadata must be true or false"),
    ],
)
def test_bad_requests_get_one_plain_sentence(client, tmp_path, files, form, status, words):
    if files == "photo":
        files = {"image": ("p.png", photo_bytes(tmp_path, 32, 32))}
    response = client.post("/api/inpaint", files=files, data=form)
    assert response.status_code == status
    message = response.json()["error"]
    assert words in message and "\n" not in message and str(tmp_path) not in message


def test_a_truncated_image_is_refused_without_naming_a_server_path(client, tmp_path):
    data = photo_bytes(tmp_path, 256, 256, name="whole.png")
    response = client.post("/api/inpaint", files={"image": ("cut.png", data[: len(data) // 2])})
    assert response.status_code == 415
    assert response.json()["error"].startswith("cut.png: cannot decode") and str(ROOT) not in response.text


def test_a_mask_of_another_size_is_refused(client, tmp_path):
    files = {
        "image": ("p.png", photo_bytes(tmp_path, 32, 32)),
        "mask": ("m.png", png_bytes(np.zeros((8, 8), np.uint8))),
    }
    response = client.post("/api/inpaint", files=files)
    assert response.status_code == 400 and "the mask is 8 × 8, the image 32 × 32" in response.json()["error"]


def test_uploads_over_the_byte_limit_are_refused_while_they_arrive(shipped, tmp_path):
    client = client_for(shipped, max_upload_bytes=4096)
    big = noise_png(64, 64)
    declared = client.post("/api/inpaint", files={"image": ("big.png", big)})
    assert declared.status_code == 413 and "limit of 0.00390625 MB" in declared.json()["error"]

    form = httpx.Request("POST", BASE, files={"image": ("big.png", big)})
    body = form.read()

    def chunks():  # no Content-Length: counted as it comes
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    headers = {"content-type": form.headers["content-type"]}
    streamed = client.post("/api/inpaint", content=chunks(), headers=headers)
    assert "content-length" not in streamed.request.headers
    assert streamed.status_code == 413


def test_images_over_the_pixel_limit_are_refused_from_their_header(shipped, tmp_path):
    client = client_for(shipped, max_pixels=1000)
    response = client.post("/api/mask", files={"image": ("p.png", photo_bytes(tmp_path, 40, 30))})
    assert response.status_code == 413
    assert response.json()["error"] == "the image has 40 × 30 = 0.0 megapixels; this server takes up to 0.001"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"host": "127.0.0.1:8000"}, 200),
        ({"host": "localhost:8000"}, 200),
        ({"host": "[::1]:8000"}, 200),
        ({"host": "attacker.example:8000"}, 403),  # DNS rebinding: another name that resolves here
        ({"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:8000"}, 200),
        ({"host": "127.0.0.1:8000", "origin": "http://attacker.example"}, 403),
        ({"host": "127.0.0.1:8000", "origin": "null"}, 403),
        ({"host": "127.0.0.1:8000", "sec-fetch-site": "cross-site"}, 403),
    ],
)
def test_only_local_names_and_same_site_pages_are_answered(client, headers, status):
    assert client.get("/api/health", headers=headers).status_code == status


def test_an_allowed_host_is_answered(shipped):
    client = client_for(shipped, allowed_hosts=("photos.lan",))
    assert client.get("/api/health", headers={"host": "photos.lan:8000"}).status_code == 200


def test_a_model_that_failed_to_load_is_explained_not_crashed(tmp_path):
    def broken():
        raise CheckpointError("broken.safetensors is not a blindfill model file")

    client = TestClient(create_app(broken), base_url=BASE)
    health = client.get("/api/health").json()
    assert health["status"] == "error" and "not a blindfill model" in health["error"]
    response = client.post("/api/inpaint", files={"image": ("p.png", photo_bytes(tmp_path, 32, 32))})
    assert response.status_code == 503
    assert response.json()["error"] == "the model failed to load: broken.safetensors is not a blindfill model file"
    assert client.get("/").status_code == 200  # the page still comes, to say so


class CountingInpainter:
    """Stands in front of the real inpainter, counts the runs at the same time and slows each."""

    def __init__(self, inner, delay=0.3):
        self.inner, self.delay = inner, delay
        self.active = self.most = 0
        self.guard = threading.Lock()
        self.device, self.settings, self.pipeline = inner.device, inner.settings, inner.pipeline

    def inpaint_array(self, *args, **kwargs):
        with self.guard:
            self.active += 1
            self.most = max(self.most, self.active)
        time.sleep(self.delay)
        try:
            return self.inner.inpaint_array(*args, **kwargs)
        finally:
            with self.guard:
                self.active -= 1


def test_concurrent_repairs_run_one_at_a_time_and_overflow_is_refused(shipped, tmp_path):
    counting = CountingInpainter(shipped)
    app = create_app(lambda: counting, limits=ServerLimits(max_queue=2))
    data = photo_bytes(tmp_path, 32, 32)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:

            async def repair():
                return await http.post("/api/inpaint", files={"image": ("p.png", data)})

            tasks = [asyncio.create_task(repair()) for _ in range(5)]
            await asyncio.sleep(0.1)
            health = (await http.get("/api/health")).json()  # answered while the model works
            return health, await asyncio.gather(*tasks)

    health, responses = asyncio.run(scenario())
    assert health["queue"] == {"running": 1, "waiting": 2}
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 200, 503, 503] and counting.most == 1
    busy = next(r for r in responses if r.status_code == 503).json()["error"]
    assert busy == "the server is busy (2 runs waiting); try again in a moment"


def test_a_failing_model_run_is_a_500_and_the_server_goes_on(shipped, tmp_path):
    class Failing(CountingInpainter):
        def inpaint_array(self, *args, **kwargs):
            raise RuntimeError("out of memory")

    client = TestClient(create_app(lambda: Failing(shipped)), base_url=BASE)
    response = client.post("/api/inpaint", files={"image": ("p.png", photo_bytes(tmp_path, 32, 32))})
    assert response.status_code == 500 and "RuntimeError" in response.json()["error"]
    assert client.get("/api/health").json()["queue"] == {"running": 0, "waiting": 0}


def test_nothing_is_written_to_disk_for_a_request(client, tmp_path, monkeypatch):
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where a large upload would spill
    big = noise_png(700, 600)  # over Starlette's 1 MB in-memory part
    assert len(big) > 2**20
    response = client.post("/api/mask", files={"image": ("big.png", big)})
    assert response.status_code == 200
    assert list(spool.iterdir()) == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_serve_command_prints_its_address_and_answers(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.serve", f"port={port}", "working_size=64"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.strip() == f"blindfill is serving on http://127.0.0.1:{port}/  (Ctrl+C stops it)"
        health = json.loads(httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=30).text)
        assert health["status"] == "ok" and health["working_size"] == 64
        busy = subprocess.run(
            [sys.executable, "-m", "pipeline.serve", f"port={port}"], cwd=ROOT, capture_output=True, text=True
        )
        assert busy.returncode == 1
        assert busy.stderr.strip().splitlines() == [f"error: 127.0.0.1:{port} is in use: choose another with port=..."]
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert list(tmp_path.iterdir()) == []


def test_the_api_reference_page_is_served_locally_and_lists_every_endpoint(client):
    page = client.get("/api")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    for endpoint in ("GET /api/health", "POST /api/mask", "POST /api/inpaint"):
        assert endpoint in text
    for field in ("image", "mask", "mode", "format", "quality", "keep_metadata", "view"):
        assert f"<code>{field}</code>" in text
    assert "The repaired photo" in text  # each endpoint's description
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", text)  # nothing fetched from elsewhere
