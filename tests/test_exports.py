"""The public names of `import edgeprof`, resolved lazily from their home modules."""

from __future__ import annotations

import importlib
import importlib.metadata

import pytest

import edgeprof


@pytest.mark.parametrize("name", [n for n in edgeprof.__all__ if n != "__version__"])
def test_every_public_name_is_the_object_its_module_defines(name: str) -> None:
    obj = getattr(edgeprof, name)
    assert callable(obj), name  # every export is a class or a function
    home = importlib.import_module(obj.__module__)
    assert home.__name__.startswith("edgeprof.")
    assert getattr(home, obj.__name__) is obj  # not a stale copy or a same-named stand-in


def test_version_is_the_installed_distributions() -> None:
    assert edgeprof.__version__ == importlib.metadata.version("edgeprof")


def test_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        edgeprof.no_such_thing  # noqa: B018
