"""A model server on this machine (Ollama, llama-server, LM Studio, vLLM, ...): where it runs,
which process serves it, what it calls itself.

A base URL that resolves to a loopback address is a server on this machine, so the run is a
*device* run: its power is this device's, its memory the serving process's. The process is
found from the listening port with psutil; where that is not allowed (another user's process,
a container, macOS without privileges) the run says so, and what it measured instead.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import psutil

from edgeprof.backends.base import TargetKind
from edgeprof.errors import UsageError

# port -> pid of the process listening on it (None: nobody we may see). May raise
# psutil.AccessDenied; injectable so that tests can simulate a port they may not read.
ListenerFinder = Callable[[int], "int | None"]

# (a piece of the command line or process name, the server's usual name), first match wins:
# the python entry points before the executables, which a python server's name would not match.
KNOWN_SERVERS: tuple[tuple[str, str], ...] = (
    ("llama_cpp.server", "python -m llama_cpp.server"),
    ("vllm", "vllm"),
    ("mlx_lm.server", "mlx_lm.server"),
    ("sglang", "sglang"),
    ("ollama", "ollama"),
    ("llama-server", "llama-server"),
    ("lm studio", "LM Studio"),
    ("lm-studio", "LM Studio"),
    ("lms", "lms"),
)


def is_loopback_host(host: str, resolve: Callable[..., Sequence[Any]] = socket.getaddrinfo) -> bool:
    """Whether `host` is this machine: a loopback address (127.0.0.0/8, ::1), `localhost`, or
    a name that resolves only to loopback addresses. A name that does not resolve is not."""
    name = host.strip("[]").lower()
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    if name == "localhost" or name.endswith(".localhost"):
        return True  # RFC 6761: always loopback, whatever a resolver says
    try:
        infos = resolve(name, None)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(_is_loopback_ip(a) for a in addresses)


def _is_loopback_ip(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def placement(loopback: bool, on_device: bool | None) -> TargetKind:
    """`device` for a server on this machine (loopback, or `on_device` True), else `remote`;
    `on_device` False forces `remote` (`--remote`)."""
    if on_device is not None:
        return "device" if on_device else "remote"
    return "device" if loopback else "remote"


def url_port(base_url: str) -> int:
    u = httpx.URL(base_url)
    return u.port or (443 if u.scheme == "https" else 80)


def listening_pid(port: int) -> int | None:
    """The pid listening on TCP `port` on this machine; None when the socket's owner is not
    shown to us (another user's process, another PID namespace). Raises psutil.AccessDenied
    where the system lists no sockets without privileges (macOS)."""
    for conn in psutil.net_connections(kind="inet"):
        port_of = getattr(conn.laddr, "port", None)  # an empty tuple when not bound
        if conn.status == psutil.CONN_LISTEN and port_of == port and conn.pid:
            return int(conn.pid)
    return None


def own_listening_pid(port: int) -> int | None:
    """The same, asked of this user's own processes one by one: what macOS allows without
    privileges."""
    me = os.getuid() if hasattr(os, "getuid") else None
    for proc in psutil.process_iter(["uids"]):
        try:
            uids = proc.info.get("uids")
            if me is not None and uids is not None and uids.real != me:
                continue
            # psutil 6 renamed connections() to net_connections(); pyproject allows 5.9
            listed = getattr(proc, "net_connections", None) or proc.connections
            for conn in listed(kind="inet"):
                port_of = getattr(conn.laddr, "port", None)
                if conn.status == psutil.CONN_LISTEN and port_of == port:
                    return int(proc.pid)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return None


@dataclass(frozen=True)
class ServerProcess:
    """The process serving a device target, or why it is not known.

    `pid` None means the server's memory is not measured: the run's RSS is then edgeprof's
    own process, and `problem` says so.
    """

    port: int
    pid: int | None = None
    name: str | None = None  # "ollama", "llama-server", "python -m llama_cpp.server", ...
    exe: str | None = None
    version: str | None = None  # as the server reports it over HTTP, where it does
    problem: str | None = None  # why the process is not known, and what was measured instead

    def params(self) -> dict[str, Any]:
        """What goes into runs.params["server"] (no command line: it may hold a key)."""
        return {
            "name": self.name,
            "pid": self.pid,
            "port": self.port,
            "exe": self.exe,
            "version": self.version,
            "memory": (
                f"RSS of pid {self.pid} ({self.name}) and its children"
                if self.pid is not None
                else "not the server's: edgeprof's own process"
            ),
            "problem": self.problem,
        }


def server_name(proc_name: str, cmdline: Sequence[str]) -> str:
    """The server's usual name from its process name and command line; the process name when
    it is none of the known servers."""
    words = " ".join([proc_name, *(os.path.basename(a) for a in cmdline[:4])]).lower()
    for piece, name in KNOWN_SERVERS:
        if piece in words.split() or (len(piece) > 3 and piece in words):
            return name
    return proc_name


def find_server(port: int, finder: ListenerFinder | None = None) -> ServerProcess:
    """The process listening on `port`, named; a `problem` where it cannot be read."""
    try:
        pid = (finder or listening_pid)(port)
    except psutil.AccessDenied:
        if finder is not None:
            return _unknown(port, "listing sockets needs privileges here (psutil AccessDenied)")
        try:
            pid = own_listening_pid(port)
        except psutil.AccessDenied:
            pid = None
        if pid is None:
            return _unknown(port, "listing sockets needs privileges here (psutil AccessDenied) "
                            "and none of this user's processes listens on it")  # fmt: skip
    if pid is None:
        return _unknown(
            port,
            "its process is not visible to this user (another user's process or a container)",
        )
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            name, cmdline = proc.name(), proc.cmdline()
            exe = _exe(proc)
    except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess) as e:
        return _unknown(port, f"pid {pid} cannot be read ({type(e).__name__})")
    return ServerProcess(port=port, pid=pid, name=server_name(name, cmdline), exe=exe)


def _exe(proc: psutil.Process) -> str | None:
    try:
        return proc.exe() or None
    except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return None


def _unknown(port: int, why: str) -> ServerProcess:
    return ServerProcess(
        port=port,
        problem=f"the server on port {port} was not identified: {why}; its memory is not "
        "measured (the run's RSS is edgeprof's own), its power is the device's as always",
    )


def server_version(
    client: httpx.Client, root: str, name: str | None
) -> tuple[str | None, dict[str, Any]]:
    """(version, the JSON it came from) as the server reports it: Ollama's /api/version,
    llama-server's /props (`build_info`, and `model_path`), vLLM's /version. (None, {}) for a
    server that reports none, or does not answer in a second."""
    paths = {"ollama": "/api/version", "llama-server": "/props", "vllm": "/version"}
    path = paths.get(name or "")
    if path is None:
        return None, {}
    try:
        resp = client.get(root.rstrip("/") + path, timeout=2.0)
        obj = resp.json() if resp.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return None, {}
    if not isinstance(obj, dict):
        return None, {}
    version = obj.get("version") or obj.get("build_info")
    return (str(version) if version else None), obj


def check_on_device_flags(on_device: bool, remote: bool) -> bool | None:
    """`--on-device` / `--remote` into the backends' `on_device` setting (None: by the URL)."""
    if on_device and remote:
        raise UsageError("give --on-device or --remote, not both")
    return True if on_device else False if remote else None
