"""This device's fingerprint: what it is, and a stable id that survives merges.

The id hashes the OS's machine id (or the primary MAC address) with the CPU model and RAM, so
the same physical device profiled twice yields one `devices` row, two devices never collide,
and the raw machine id is never stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import psutil

MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")


def cpu_model(sys_root: Path = Path("/")) -> str:
    cpuinfo = sys_root / "proc/cpuinfo"
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        m = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
        if m:
            return m.group(1).strip()
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                timeout=2, check=False,
            )  # fmt: skip
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def machine_secret(sys_root: Path = Path("/")) -> str:
    for name in MACHINE_ID_FILES:
        try:
            value = (sys_root / name.lstrip("/")).read_text().strip()
        except OSError:
            continue
        if value:
            return value
    return f"mac:{uuid.getnode():012x}"


def board_model(sys_root: Path = Path("/")) -> str | None:
    """Raspberry Pi, Jetson and other boards name themselves in the device tree."""
    try:
        return (sys_root / "proc/device-tree/model").read_text().strip("\x00\n ") or None
    except OSError:
        return None


def accelerators() -> list[dict[str, Any]]:
    """NVIDIA GPUs through NVML; absent drivers simply mean none."""
    found: list[dict[str, Any]] = []
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return found
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            found.append(
                {
                    "kind": "nvidia-gpu",
                    "name": name.decode() if isinstance(name, bytes) else name,
                    "memory_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                }
            )
    finally:
        pynvml.nvmlShutdown()
    return found


def fingerprint(sys_root: Path = Path("/")) -> dict[str, Any]:
    cpu = cpu_model(sys_root)
    ram = int(psutil.virtual_memory().total)
    board = board_model(sys_root)
    secret = machine_secret(sys_root)
    digest = hashlib.sha256(f"edgeprof-device\0{secret}\0{cpu}\0{ram}".encode()).hexdigest()
    hostname = socket.gethostname()
    return {
        "id": digest[:24],
        "label": board or hostname,
        "hostname": hostname,
        "cpu_model": cpu,
        "cores": psutil.cpu_count(logical=False) or os.cpu_count() or 1,
        "threads": os.cpu_count() or 1,
        "ram_bytes": ram,
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "accelerators": accelerators(),
        "mem_bandwidth_gbs": None,
    }


def environment() -> dict[str, Any]:
    """Versions that shape the numbers, recorded with every run."""
    from importlib import metadata

    env: dict[str, Any] = {"python": platform.python_version()}
    for dist in ("llama-cpp-python", "onnxruntime", "openai", "anthropic", "genai-prices"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            env[dist] = metadata.version(dist)
    return env


def to_json(device: dict[str, Any]) -> str:
    return json.dumps(device, sort_keys=True)
