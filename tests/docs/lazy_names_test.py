"""The lazily exported names of each package stay what they name after every sub-module is imported."""

import importlib
import pkgutil
import types

import pytest

LAZY_PACKAGES = ("keras_openseg", "keras_openseg.evaluation", "keras_openseg.training", "keras_openseg.export")


@pytest.mark.parametrize("package_name", LAZY_PACKAGES)
def test_no_public_name_is_shadowed_by_a_submodule(package_name):
    package = importlib.import_module(package_name)
    names = package.__lazy_names__
    children = {info.name for info in pkgutil.iter_modules(package.__path__)}
    # A name spelled like a sub-module becomes that module as soon as anything imports the sub-module (Python
    # binds it on the package), whatever the lazy `__getattr__` would return.
    assert not (set(names) & children), f"rename the sub-modules {sorted(set(names) & children)} of {package_name}"
    for child in sorted(children):
        importlib.import_module(f"{package_name}.{child}")
    for name, module_name in names.items():
        value = getattr(package, name)
        assert not isinstance(value, types.ModuleType), (package_name, name)
        assert value is getattr(importlib.import_module(module_name), name)
