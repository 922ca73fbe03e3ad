"""The `>>>` examples of the package's docstrings run and print what they say, on the current backend.

Every module of `keras_openseg/` whose source holds a `>>>` is imported and its examples are collected with
`doctest.DocTestFinder` (module, classes, functions, methods) and run with `doctest.DocTestRunner`. The suite
runs once per backend, so each example passes on TensorFlow, JAX and PyTorch. Examples must print values that
are the same on every backend (numpy arrays, shapes, floats), not backend tensors; `np`, `keras` and `ops`
(`keras.ops`) need no import. keras_hub-style
```python blocks under `Example:` that need a download (a preset, a dataset) are prose and not run.
"""

import doctest
import importlib
import pathlib

import keras
import numpy as np
import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "keras_openseg"
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

# Names every example may use without importing them, as in Keras' own docstrings.
EXTRA_GLOBALS = {"np": np, "keras": keras, "ops": keras.ops}
# The models/ and distribution modules, rewritten by issue 13's redesign: run like the others; a failure says so.
MODELS_SIDE = (
    "keras_openseg.models.",
    "keras_openseg.distribution",
    "keras_openseg.losses.distributed_loss",
    "keras_openseg.training.distribution",
)
# Modules whose examples are not run, with the reason. Empty: every `>>>` example of the package runs.
LEFT_OUT = {}


def modules_with_examples():
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ">>>" in path.read_text(encoding="utf-8"):
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = modules_with_examples()


def test_examples_are_found():
    assert len(MODULES) >= 20  # 23 modules had examples when this test was written
    assert not set(LEFT_OUT) - set(MODULES), "LEFT_OUT names a module without examples"


@pytest.mark.parametrize("module_name", [name for name in MODULES if name not in LEFT_OUT])
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    tests = [test for test in doctest.DocTestFinder().find(module, extraglobs=EXTRA_GLOBALS) if test.examples]
    source = pathlib.Path(module.__file__).read_text(encoding="utf-8")
    found = sum(len(test.examples) for test in tests)
    # A `>>>` that the finder cannot see (a comment, a nested function, a name imported from elsewhere) is an
    # example that never runs.
    assert found >= source.count(">>> "), f"{module_name}: {source.count('>>> ')} '>>>' lines, {found} examples found"
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    failures = []
    for test in tests:
        keras.utils.set_random_seed(0)
        result = runner.run(test, out=failures.append)
        assert result.attempted == len(test.examples)
    owner = " (models/distribution side of issue 13)" if module_name.startswith(MODELS_SIDE) else ""
    assert not failures, f"{module_name}{owner}:\n" + "".join(failures)
