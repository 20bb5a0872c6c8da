"""llama.cpp RPC workers: addresses, reachability, and the worker command.

The main binary reaches workers with ``--rpc host:port,...`` and offloads layers to them.
The pinned llama.cpp client aborts when a worker cannot be reached or dies, and its
message does not always say which one; so LocalLLM probes the workers itself, before a
run (so an unreachable address fails fast instead of hanging in connect) and after a
failure (to name the worker that went away).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Iterable, Sequence

DEFAULT_PORT = 50052
CONNECT_TIMEOUT_SECONDS = 3.0
WORKER_NAME = "ggml-rpc-server"
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def parse_servers(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Validated ``host:port`` addresses (``[v6]:port`` for IPv6); ValueError otherwise."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    addresses = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"invalid RPC worker address {item!r}: expected host:port")
        host, port = split_address(item.strip())
        addresses.append(join_address(host, port))
    return tuple(addresses)


def join_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_address(address: str) -> tuple[str, int]:
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        if not rest.startswith(":"):
            raise ValueError(f"invalid RPC worker address {address!r}: expected [v6]:port")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"invalid RPC worker address {address!r}: bad IPv6 host") from None
    else:
        host, sep, port_text = address.rpartition(":")
        if not sep or not host:
            raise ValueError(f"invalid RPC worker address {address!r}: expected host:port")
        if not _valid_host(host):
            raise ValueError(f"invalid RPC worker address {address!r}: bad host {host!r}")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid RPC worker address {address!r}: port must be 1-65535")
    return host, int(port_text)


def _valid_host(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(host)) and not host.replace(".", "").isdigit()


def answers(address: str, timeout: float = CONNECT_TIMEOUT_SECONDS) -> bool:
    """True when a TCP connection to the worker opens within ``timeout``."""
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def unreachable(addresses: Sequence[str], timeout: float = CONNECT_TIMEOUT_SECONDS) -> list[str]:
    return [address for address in addresses if not answers(address, timeout)]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def worker_argv(binary: str, host: str, port: int, threads: int | None, cache: bool) -> list[str]:
    argv = [binary, "--host", host, "--port", str(port)]
    argv += ["--threads", str(threads or os.cpu_count() or 1)]
    if cache:
        argv.append("--cache")
    return argv


def find_worker(binary_path: str) -> str:
    """``ggml-rpc-server`` (or ``rpc-server``) beside the model binary."""
    directory = os.path.dirname(os.path.realpath(binary_path))
    candidates = [os.path.join(directory, name) for name in (WORKER_NAME, "rpc-server")]
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    raise FileNotFoundError("no RPC worker binary found; looked at: " + ", ".join(candidates))
