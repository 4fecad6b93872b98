"""Which installed plugins load (`EDGEPROF_LOAD_PLUGINS`), and a plugin that tries to replace a
built-in backend or sensor source is refused and named."""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeprof import plugins
from edgeprof.backends import backend_class, backend_names, unregister_backend
from edgeprof.backends.llamacpp import LlamaCppBackend
from edgeprof.samplers import sampler_class
from edgeprof.samplers.rapl import RaplSampler

PLUGIN = """
from edgeprof.backends import register_backend
from edgeprof.backends.base import Backend
from edgeprof.samplers import register_sampler
from edgeprof.samplers.rapl import RaplSampler


class Impostor(Backend):
    name = "impostor"

    def load(self):
        raise AssertionError("never loaded")

    def generate(self, request):
        raise AssertionError("never called")


register_backend("{name}", Impostor)
"""


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Two plugin modules on sys.path behind entry points "extra" (adds a backend) and
    "takeover" (replaces llamacpp, then a sensor source); the list names what loaded."""
    (tmp_path / "ep_extra.py").write_text(PLUGIN.format(name="extra"))
    takeover = PLUGIN.format(name="llamacpp") + '\nregister_sampler("rapl", RaplSampler)\n'
    (tmp_path / "ep_takeover.py").write_text(takeover)
    sensor_only = "from edgeprof.samplers import register_sampler\nfrom edgeprof.samplers.rapl "
    sensor_only += 'import RaplSampler\nregister_sampler("rapl", RaplSampler)\n'
    (tmp_path / "ep_sensor.py").write_text(sensor_only)
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [
        importlib.metadata.EntryPoint(name=n, value=f"ep_{n}", group=plugins.ENTRY_POINT_GROUP)
        for n in ("extra", "takeover", "sensor")
    ]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: eps)
    monkeypatch.setattr(plugins, "_loaded", False)
    monkeypatch.setattr(plugins, "failures", {})
    yield ["ep_extra", "ep_takeover", "ep_sensor"]
    unregister_backend("extra")
    for m in ("ep_extra", "ep_takeover", "ep_sensor"):
        sys.modules.pop(m, None)


def test_an_empty_switch_loads_no_plugin(
    installed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(plugins.LOAD_PLUGINS_ENV, "")
    assert "extra" not in backend_names()
    assert not any(m in sys.modules for m in installed)


def test_a_list_loads_those_plugins_only(
    installed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(plugins.LOAD_PLUGINS_ENV, "extra")
    assert "extra" in backend_names()
    assert "ep_takeover" not in sys.modules


def test_unset_loads_every_plugin(installed: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(plugins.LOAD_PLUGINS_ENV, raising=False)
    assert "extra" in backend_names()
    assert set(plugins.failures) == {"takeover", "sensor"}  # tried, and refused


def test_a_plugin_cannot_replace_a_builtin(
    installed: list[str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(plugins.LOAD_PLUGINS_ENV, "takeover,sensor")
    backend_names()
    assert backend_class("llamacpp") is LlamaCppBackend
    assert sampler_class("rapl") is RaplSampler
    assert "tried to replace the built-in backend 'llamacpp'" in plugins.failures["takeover"]
    assert "tried to replace the built-in sensor source 'rapl'" in plugins.failures["sensor"]
    assert "plugin takeover did not load" in caplog.text


def test_outside_plugin_loading_a_builtin_may_be_replaced() -> None:
    """A test or a notebook replaces a built-in deliberately, by calling the registry."""
    from edgeprof.backends import register_backend

    class Mine(LlamaCppBackend):
        pass

    register_backend("llamacpp", Mine)
    try:
        assert backend_class("llamacpp") is Mine
    finally:
        register_backend("llamacpp", LlamaCppBackend)
