"""`vaelab explore RUN`: the latent explorer, a small web app on this machine (the `explore` extra)."""

from __future__ import annotations

import argparse
import errno
import importlib.util
import ipaddress
import socket

from ..errors import VaelabError
from ..training.checkpoint import find_checkpoint
from .args import add_data_dir, add_weights

EXTRA = ("starlette", "uvicorn", "multipart")  # multipart: python-multipart, for uploads


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "explore",
        help="a web page to move through a run's latent space: a map or sliders, samples, interpolations",
    )
    p.add_argument("run", metavar="RUN", help="run directory or checkpoint file")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; anything else lets others in)",
    )
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    p.add_argument("--device", default="cpu")
    add_data_dir(p)
    add_weights(p)
    p.set_defaults(func=explore)


def explore(args: argparse.Namespace) -> int:
    missing = [name for name in EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise VaelabError(f"explore needs the explore extra: pip install 'vaelab[explore]' (missing {missing[0]})")
    find_checkpoint(args.run)  # a run that does not exist, then a port in use: one line each, at once
    sock = _bind(args.host, args.port)
    try:
        import uvicorn

        from ..explore.app import create_app
        from ..explore.state import load_explorer

        explorer = load_explorer(args.run, device=args.device, weights=args.weights, data_dir=args.data_dir)
        loopback = _is_loopback(args.host)
        app = create_app(explorer, allowed_hosts=["127.0.0.1", "localhost", "[::1]"] if loopback else None)
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"vaelab explore: http://{host}:{args.port}/ (Ctrl-C to stop)", flush=True)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, not {port}")
    return port


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port), handed to uvicorn; a port in use or a bad address is one line."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as e:
        raise VaelabError(f"--host {host}: not an address of this machine ({e.strerror})") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise VaelabError(f"port {port} is in use on {host}: pick another with --port") from None
        raise VaelabError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    return sock


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
