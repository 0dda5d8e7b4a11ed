"""The latent explorer's API through Starlette's test client: every answer, and every malformed request a 4xx
with a JSON message (the client raises on a 500, so none reaches the generic handler)."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import socket
import struct
import warnings
import zlib

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")
pytest.importorskip("multipart")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import vaelab  # noqa: E402
from vaelab.cli.main import main as cli  # noqa: E402
from vaelab.explore.app import MAX_BODY, create_app  # noqa: E402
from vaelab.explore.state import load_explorer, untrained_explorer  # noqa: E402

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with")  # Starlette 1.x would rather have httpx2
    from starlette.testclient import TestClient


@pytest.fixture(scope="module")
def cvae2():
    """An untrained cvae2 (2-D latent, 28x28) on random test images: the map and every endpoint."""
    return untrained_explorer("cvae2", images=200)


@pytest.fixture(scope="module")
def client(cvae2):
    with TestClient(create_app(cvae2)) as c:
        yield c


def png_of(content: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(content))
    img.load()
    return img


def upload(size=(40, 30), colour=200) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0]), colour, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A small PNG whose header declares width x height grey pixels (its one data chunk is far too short)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def refused(response, status=400) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    assert message and "Traceback" not in message
    return message


# --- answers -----------------------------------------------------------------------------------------------


def test_info_names_the_latent_and_orders_every_dim(client):
    info = client.get("/api/info").json()
    assert info["latent_dim"] == 2 and info["groups"] == [[2]] and info["image_shape"] == [1, 28, 28]
    assert sorted(info["order"]) == [0, 1] and len(info["kl_per_dim"]) == 2
    kl = [info["kl_per_dim"][d] for d in info["order"]]
    assert kl == sorted(kl, reverse=True)  # most informative first
    assert info["map"] is True and info["labels"] == [str(i) for i in range(10)] and info["test_images"] == 200


def test_points_are_the_subset_posterior_means_with_labels(client, cvae2):
    p = client.get("/api/points").json()
    assert len(p["x"]) == len(p["y"]) == len(p["label"]) == len(p["index"]) == 200
    assert all(math.isfinite(v) for v in p["x"] + p["y"])
    x0, x1, y0, y1 = p["bounds"]
    assert x0 < min(p["x"]) <= max(p["x"]) < x1 and y0 < min(p["y"]) <= max(p["y"]) < y1
    assert p["label"] == cvae2.labels[p["index"]].tolist()


def test_decode_is_a_png_of_the_image_size_that_changes_with_z(client):
    a = client.post("/api/decode", json={"z": [0.0, 0.0]})
    b = client.post("/api/decode", json={"z": [3.0, -2.5], "temperature": 0.5, "seed": 7})
    assert a.status_code == b.status_code == 200 and a.headers["content-type"] == "image/png"
    img = png_of(a.content)
    assert img.size == (28, 28) and img.mode == "L"
    assert np.asarray(png_of(b.content)).tolist() != np.asarray(img).tolist()
    assert client.post("/api/decode", json={"z": [0, 0]}).content == a.content  # deterministic
    assert "default-src 'self'" in a.headers["content-security-policy"]


def test_sample_interpolate_and_reconstruct(client):
    grid = png_of(client.post("/api/sample", json={"n": 9, "temperature": 0.8, "seed": 1}).content)
    assert grid.size == (3 * 29 + 1, 3 * 29 + 1)  # 3x3 tiles of 28 px, 1 px borders
    strip = png_of(client.post("/api/interpolate", json={"a": 0, "b": 5, "steps": 4}).content)
    assert strip.size == (6 * 29 + 1, 29 + 1)  # the two images and 4 steps between them
    form = {"a": (None, "3"), "b": ("mine.png", upload(), "image/png"), "steps": (None, "3")}
    r = client.post("/api/interpolate", files=form)
    assert r.status_code == 200 and png_of(r.content).size == (5 * 29 + 1, 30)
    r = client.post("/api/reconstruct", files={"image": ("mine.png", upload(), "image/png")})
    assert r.status_code == 200 and png_of(r.content).size == (2 * 29 + 1, 30)
    left = np.asarray(png_of(r.content))[1:29, 1:29]
    assert (left == 200).all()  # the upload as read: cropped and resized to 28x28
    assert png_of(client.post("/api/reconstruct", json={"index": 4}).content).size == (59, 30)


def test_the_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text and "http" not in page.text.split("<body>")[0]
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200


# --- refusals ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"z": [0.0]}, "2 values"),
        ({"z": [0.0, 0.0, 0.0]}, "2 values"),
        ({"z": [float("nan"), 0.0]}, "z[0]"),
        ({"z": [0.0, float("inf")]}, "z[1]"),
        ({"z": [0.0, 1e300]}, "z[1]"),
        ({"z": [0.0, 10.5]}, "z[1]"),
        ({"z": "0,0"}, "list"),
        ({"z": [0, "1"]}, "z[1]"),
        ({"z": [0, None]}, "z[1]"),
        ({"z": [0, True]}, "z[1]"),
        ({"z": [[0], [1]]}, "z[0]"),
        ({}, "missing field: z"),
        ({"z": [0, 0], "path": "/etc/passwd"}, "unknown field: path"),
        ({"z": [0, 0], "temperature": 2.5}, "temperature"),
        ({"z": [0, 0], "temperature": -0.1}, "temperature"),
        ({"z": [0, 0], "temperature": "hot"}, "temperature"),
        ({"z": [0, 0], "seed": -1}, "seed"),
        ({"z": [0, 0], "seed": 1.5}, "seed"),
    ],
)
def test_bad_decode_requests_are_400(client, body, words):
    raw = json.dumps(body).encode()  # NaN and Infinity as Python writes them (httpx's json= refuses them)
    assert words in refused(client.post("/api/decode", content=raw, headers={"content-type": "application/json"}))


@pytest.mark.parametrize(
    "raw", [b"", b"not json", b"[1, 2]", b'"z"', b"null", b'{"z": [0, 0]', b"\xff\xfe", b"[" * 100000]
)
def test_a_body_that_is_not_a_json_object_is_400(client, raw):
    assert "JSON object" in refused(client.post("/api/decode", content=raw))


def test_nan_literals_in_the_json_text_are_refused(client):
    refused(client.post("/api/decode", content=b'{"z": [NaN, Infinity]}'))


@pytest.mark.parametrize(
    ("url", "body", "words"),
    [
        ("/api/sample", {"n": -1}, "n"),
        ("/api/sample", {"n": 0}, "n"),
        ("/api/sample", {"n": 10**6}, "n"),
        ("/api/sample", {"n": "16"}, "n"),
        ("/api/interpolate", {"a": 0, "b": 200}, "b"),
        ("/api/interpolate", {"a": -1, "b": 0}, "a"),
        ("/api/interpolate", {"a": 0, "b": 1, "steps": 1000}, "steps"),
        ("/api/interpolate", {"a": 0, "b": 1, "steps": -3}, "steps"),
        ("/api/interpolate", {"a": "../../etc/passwd", "b": 1}, "a"),
        ("/api/interpolate", {"a": 0}, "missing field: b"),
        ("/api/reconstruct", {"index": 10**30}, "index"),
        ("/api/reconstruct", {"index": 1.5}, "index"),
    ],
)
def test_bad_counts_and_indexes_are_400(client, url, body, words):
    assert words in refused(client.post(url, json=body))


def test_uploads_that_are_not_images_are_400(client):
    for name, data in [("a.png", b"hello"), ("a.txt", b""), ("a.png", upload()[:60]), ("a.svg", b"<svg/>")]:
        assert "image" in refused(client.post("/api/reconstruct", files={"image": (name, data, "image/png")}))
    assert "file" in refused(client.post("/api/reconstruct", files={"image": (None, "3")}))
    assert "missing" in refused(client.post("/api/reconstruct", files={"other": ("a.png", upload(), "image/png")}))
    form = {"a": (None, "x"), "b": (None, "1")}
    assert "whole number" in refused(client.post("/api/interpolate", files=form))


def test_an_oversize_upload_is_413(client):
    big = b"\0" * (MAX_BODY + 1)
    refused(client.post("/api/reconstruct", files={"image": ("big.png", big, "image/png")}), status=413)


@pytest.mark.parametrize("side", [5000, 100000])
def test_an_image_declaring_too_many_pixels_is_refused_from_its_header(client, side):
    crafted = png_header(side, side)
    assert len(crafted) < 200
    message = refused(client.post("/api/reconstruct", files={"image": ("bomb.png", crafted, "image/png")}))
    assert "pixels" in message


def test_unknown_routes_and_methods_are_json(client):
    assert refused(client.get("/api/nothing"), status=404)
    assert refused(client.get("/api/decode"), status=405)
    assert refused(client.get("/static/../app.py"), status=404)


def test_the_map_of_a_latent_that_is_not_2d_is_404():
    explorer = untrained_explorer("conv16", images=20)
    with TestClient(create_app(explorer)) as c:
        assert "sliders" in refused(c.get("/api/points"), status=404)
        assert c.get("/api/info").json()["map"] is False
        assert "16 values" in refused(c.post("/api/decode", json={"z": [0, 0]}))


def test_anything_unexpected_is_a_generic_500_without_traceback(cvae2, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals /home/user/path")

    monkeypatch.setattr(cvae2, "decode", broken)
    with TestClient(create_app(cvae2), raise_server_exceptions=False) as c:
        r = c.post("/api/decode", json={"z": [0, 0]})
    assert r.status_code == 500 and r.json() == {"error": "internal error (see the server's log)"}


def test_a_host_header_not_allowed_is_refused(cvae2):
    with TestClient(create_app(cvae2, allowed_hosts=["127.0.0.1"]), base_url="http://evil.example") as c:
        assert c.get("/api/info").status_code == 400


# --- runs --------------------------------------------------------------------------------------------------


def test_a_2d_run_loads_with_its_map(tiny_run):
    explorer = load_explorer(tiny_run, subset=50)
    assert explorer.has_map and len(explorer.points.xy) == min(50, len(explorer.images))
    with TestClient(create_app(explorer)) as c:
        assert c.get("/api/points").status_code == 200
        assert png_of(c.post("/api/decode", json={"z": [1, 1]}).content).size == (16, 16)


@pytest.fixture(scope="module")
def hvae_run(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("hvae") / "run"
    vaelab.train(
        encoder="hvae",
        decoder="hvae",
        width=8,
        depth=1,
        latent_dim=2,
        resolutions=(7, 1),
        groups=1,
        limit=64,
        epochs=1,
        data_dir=data_root,
        out=out,
        progress=False,
        log=lambda line: None,
    )
    return out


def test_a_hierarchy_has_sliders_of_its_top_group_and_redraws_the_rest(hvae_run, data_root):
    explorer = load_explorer(hvae_run, data_dir=data_root, subset=100)
    with TestClient(create_app(explorer)) as c:
        info = c.get("/api/info").json()
        assert info["map"] is False and info["latent_dim"] == 2 and len(info["groups"]) == 2
        assert sorted(info["order"]) == [0, 1]
        assert c.get("/api/points").status_code == 404

        def decode(**body):
            r = c.post("/api/decode", json={"z": [0.5, -0.5], **body})
            assert r.status_code == 200
            return r.content

        assert decode(temperature=0, seed=1) == decode(temperature=0, seed=2)  # the lower groups' means
        assert decode(temperature=1, seed=1) == decode(temperature=1, seed=1)
        assert decode(temperature=1, seed=1) != decode(temperature=1, seed=2)  # redrawn


def test_the_command_refuses_a_missing_run_a_port_in_use_and_a_missing_extra(tiny_run, tmp_path, capsys, monkeypatch):
    def one_line_error(argv: list[str]) -> str:
        assert cli(["explore", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("vaelab: error: ")
        return err

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert "no such run" in one_line_error([str(tmp_path / "nothing"), "--port", port])
        assert f"port {port} is in use" in one_line_error([str(tiny_run), "--port", port])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "uvicorn" else real(name))
    assert "pip install 'vaelab[explore]'" in one_line_error([str(tiny_run)])


def test_a_chunked_body_over_the_limit_is_413(client):
    def chunks():
        for _ in range(6):
            yield b"\0" * 2**20

    refused(client.post("/api/decode", content=chunks()), status=413)
    headers = {"content-type": "multipart/form-data; boundary=xyz"}
    refused(client.post("/api/reconstruct", content=chunks(), headers=headers), status=413)
