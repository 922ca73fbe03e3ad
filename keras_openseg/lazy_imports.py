"""PEP 562 lazy attributes for the package's `__init__` modules.

A package `__init__` lists its public names and the modules defining them; each module is imported the first
time one of its names is read. So `import keras_openseg` (and `import keras_openseg.evaluation.cli` for the
command line) loads no Keras, TensorFlow, JAX or keras_hub until a model, layer, loss or metric is used.
"""

import importlib


def lazy_attributes(package, names, submodules=()):
    """`(__getattr__, __dir__)` for a package `__init__` whose public names are imported on first use.

    Args:
        package: str. The package's `__name__`.
        names: dict. Public name -> the module that defines it (the value is that module's attribute `name`).
        submodules: iterable of str. Sub-modules also reachable as attributes (`package.submodule`).

    Example:

    >>> __getattr__, __dir__ = lazy_attributes("json", {"JSONDecodeError": "json.decoder"})
    >>> __getattr__("JSONDecodeError").__name__
    'JSONDecodeError'
    """
    module = importlib.import_module(package)
    submodules = tuple(submodules)
    # A public name must not also be a sub-module of the package: importing the sub-module (by any other module)
    # would bind the package attribute to it, shadowing the name (tests/docs/lazy_names_test.py checks this).
    module.__lazy_names__ = dict(names)

    def __getattr__(name):
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
        elif name in submodules:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(module, name, value)  # later look-ups do not come back here
        return value

    def __dir__():
        return sorted(set(vars(module)) | set(names) | set(submodules))

    return __getattr__, __dir__
