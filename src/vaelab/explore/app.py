"""The latent explorer's web app: JSON endpoints that answer PNGs, and the page that uses them.

    GET  /                  the page (static/index.html, app.js, style.css: no build step, nothing fetched
                            from elsewhere)
    GET  /api/info          latent_dim, groups, image_shape, the dims' order (most informative first), labels
    GET  /api/points        a 2-D latent's map: test images' posterior means with their labels
    POST /api/decode        {"z": [...], "temperature": 0, "seed": 0} -> PNG
    POST /api/sample        {"n": 16, "temperature": 1, "seed": 0} -> PNG grid
    POST /api/interpolate   {"a": 0, "b": 1, "steps": 8, "temperature": 0, "seed": 0} -> PNG strip; or a
                            multipart form whose a and b are each a test index or an image file
    POST /api/reconstruct   a multipart form with an image file `image` (or JSON {"index": i}) -> PNG

Every request is checked before the model sees it: a bad one is a 4xx with {"error": message}; anything
unexpected is a 500 with a generic message, never a traceback. Nothing in a request names a file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import checks
from ..errors import VaelabError
from .state import Explorer

STATIC = Path(__file__).parent / "static"
MAX_BODY = 5 * 1024 * 1024  # bytes of one request: an upload, or two for an interpolation
MAX_Z = 10.0  # |z| of a decoded latent
MAX_TEMPERATURE = 2.0
MAX_SAMPLES = 64
MAX_STEPS = 16
MAX_MESSAGE = 300  # characters of an error message (a value quoted in it can be long)

SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
     b"base-uri 'none'; frame-ancestors 'none'; form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]  # fmt: skip


def create_app(explorer: Explorer, *, allowed_hosts: list[str] | None = None) -> Starlette:
    """The app around one `Explorer`. `allowed_hosts`: the Host headers answered (the command passes the
    loopback names when it binds to loopback, so that another site cannot reach it by DNS rebinding)."""

    async def info(request: Request) -> Response:
        return JSONResponse(explorer.info())

    async def points(request: Request) -> Response:
        p = explorer.points
        if p is None:
            raise HTTPException(404, "no map: the latent is not 2-D in one group (use the sliders)")
        xy = p.xy.double()
        low, high = xy.min(0).values, xy.max(0).values
        pad = (high - low).clamp(min=1e-3) * 0.05
        bounds = torch.stack([low - pad, high + pad], 1).clamp(-MAX_Z, MAX_Z)  # (2, 2): x and y, low and high
        return JSONResponse(
            {
                "x": [round(v, 4) for v in xy[:, 0].tolist()],
                "y": [round(v, 4) for v in xy[:, 1].tolist()],
                "label": None if p.labels is None else p.labels.tolist(),
                "index": p.indices.tolist(),
                "bounds": [round(v, 4) for v in bounds.flatten().tolist()],  # x_low, x_high, y_low, y_high
            }
        )

    async def decode(request: Request) -> Response:
        body = fields(await json_body(request), optional=("temperature", "seed"), required=("z",))
        z = latent(body["z"], explorer.model.latent_dim)
        t, seed = temperature(body.get("temperature", 0.0)), seed_of(body.get("seed", 0))
        return png(await run_in_threadpool(explorer.decode, z, temperature=t, seed=seed))

    async def sample(request: Request) -> Response:
        body = fields(await json_body(request), optional=("n", "temperature", "seed"))
        n = checked(checks.whole, "n", body.get("n", 16), low=1, high=MAX_SAMPLES)
        t, seed = temperature(body.get("temperature", 1.0)), seed_of(body.get("seed", 0))
        return png(await run_in_threadpool(explorer.sample, n, temperature=t, seed=seed))

    async def interpolate(request: Request) -> Response:
        names = ("steps", "temperature", "seed")
        if is_multipart(request):
            async with request.form(max_files=2, max_fields=8, max_part_size=1024) as form:
                body = fields(dict(form), optional=names, required=("a", "b"))
                ends = [await image_of(body[key], key) for key in ("a", "b")]
                body = {key: number(body[key], key) for key in names if key in body}
        else:
            body = fields(await json_body(request), optional=names, required=("a", "b"))
            ends = [await image_of(body[key], key) for key in ("a", "b")]
        steps = checked(checks.whole, "steps", body.get("steps", 8), low=2, high=MAX_STEPS)
        t, seed = temperature(body.get("temperature", 0.0)), seed_of(body.get("seed", 0))
        return png(await run_in_threadpool(explorer.interpolate, *ends, steps=steps, temperature=t, seed=seed))

    async def reconstruct(request: Request) -> Response:
        if is_multipart(request):
            async with request.form(max_files=1, max_fields=2, max_part_size=1024) as form:
                body = fields(dict(form), required=("image",))
                if not isinstance(body["image"], UploadFile):
                    raise HTTPException(400, "image must be an uploaded image file")
                x = await image_of(body["image"], "image")
        else:
            x = await image_of(fields(await json_body(request), required=("index",))["index"], "index")
        return png(await run_in_threadpool(explorer.reconstruct, x))

    async def image_of(value, name: str) -> torch.Tensor:
        """A test image by index (an int, or its digits in a form) or an uploaded image file: uint8 (C, H, W)."""
        if isinstance(value, UploadFile):
            data = await value.read(MAX_BODY + 1)
            if len(data) > MAX_BODY:
                raise HTTPException(413, f"{name}: the upload is over {MAX_BODY // 2**20} MB")
            try:
                return await run_in_threadpool(explorer.read_upload, data)
            except VaelabError as e:
                raise HTTPException(400, f"{name}: {e}") from None
        index = number(value, name, cast=int) if isinstance(value, str) else value
        i = checked(checks.whole, name, index, low=0, high=len(explorer.images) - 1)
        return explorer.test_image(i)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    routes = [
        Route("/", page),
        Route("/api/info", info),
        Route("/api/points", points),
        Route("/api/decode", decode, methods=["POST"]),
        Route("/api/sample", sample, methods=["POST"]),
        Route("/api/interpolate", interpolate, methods=["POST"]),
        Route("/api/reconstruct", reconstruct, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders), Middleware(LimitBody, limit=MAX_BODY)]
    if allowed_hosts:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: http_error, VaelabError: user_error, Exception: server_error},
    )


# --- checks: each turns a bad value into a 4xx with a message -------------------------------------------


async def json_body(request: Request) -> dict:
    """The request's body as a JSON object (400 otherwise)."""
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise HTTPException(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise HTTPException(400, f"the body must be a JSON object, not {type(body).__name__}")
    return body


def fields(body: dict, *, optional: tuple[str, ...] = (), required: tuple[str, ...] = ()) -> dict:
    """`body`, refused when it lacks a required field or holds an unknown one."""
    missing = [k for k in required if k not in body]
    if missing:
        raise HTTPException(400, f"missing field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    unknown = sorted(str(k)[:40] for k in body if k not in required + optional)
    if unknown:
        raise HTTPException(400, f"unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown[:5])}")
    return body


def checked(check, name: str, value, **bounds):
    """A `vaelab.checks` rule whose VaelabError becomes a 400."""
    try:
        return check(name, value, **bounds)
    except VaelabError as e:
        raise HTTPException(400, str(e)) from None


def latent(value, dim: int) -> list[float]:
    if not isinstance(value, list):
        raise HTTPException(400, f"z must be a list of {dim} numbers")
    if len(value) != dim:
        raise HTTPException(400, f"z must have {dim} values (the latent_dim), not {len(value)}")
    return [checked(checks.real, f"z[{i}]", v, low=-MAX_Z, high=MAX_Z) for i, v in enumerate(value)]


def temperature(value) -> float:
    return checked(checks.real, "temperature", value, low=0, high=MAX_TEMPERATURE)


def seed_of(value) -> int:
    return checked(checks.seed, "seed", value)


def number(text, name: str, cast=float):
    """A form field's text as a number (an int where it is whole)."""
    if not isinstance(text, str):
        raise HTTPException(400, f"{name} must be a number, not a file")
    try:
        value = float(text.strip()) if cast is float else int(text.strip())
    except ValueError:
        raise HTTPException(400, f"{name} must be a {'whole ' if cast is int else ''}number") from None
    return int(value) if cast is float and math.isfinite(value) and value.is_integer() else value


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


def png(data: bytes) -> Response:
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})


# --- errors as JSON --------------------------------------------------------------------------------------


def _error(status: int, message: str) -> JSONResponse:
    message = message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."
    return JSONResponse({"error": message}, status_code=status)


async def http_error(request: Request, exc: HTTPException) -> Response:
    return _error(exc.status_code, str(exc.detail))


async def user_error(request: Request, exc: VaelabError) -> Response:
    return _error(400, str(exc))


async def server_error(request: Request, exc: Exception) -> Response:
    """Anything unexpected: a generic message; the traceback goes to the server's log only."""
    return _error(500, "internal error (see the server's log)")


class LimitBody:
    """Refuses request bodies over `limit` bytes (413): by Content-Length at once, else while reading."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            too_big = length.isdigit()
            status, message = (413, f"the request is over {self.limit // 2**20} MB") if too_big else (400, "")
            await _error(status, message or "bad Content-Length")(scope, receive, send)
            return
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, f"the request is over {self.limit // 2**20} MB")
            return message

        await self.app(scope, limited, send)


class SecurityHeaders:
    """A content security policy (this server's own scripts, styles and images only) on every response."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        async def with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)
