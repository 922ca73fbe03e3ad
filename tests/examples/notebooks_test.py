"""Runs every notebook of examples/ on the current Keras backend, with tiny sizes, so the examples never rot.

Each notebook runs top to bottom in a fresh kernel started with this interpreter (`sys.executable`, through a
kernelspec written to a temporary JUPYTER_PATH: no user-level Jupyter state is read or written), in one
shared temporary folder (so 03 evaluates the preset 02 trained), with KERAS_OPENSEG_NOTEBOOK_TINY=1 and the
KERAS_BACKEND of this test run (and, on JAX, one XLA compilation cache). The budget is 40 s per notebook on 2
CI cores; a slower run warns with its time.
"""

import datetime
import json
import os
import pathlib
import re
import sys
import time
import warnings

import keras
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
KERNEL_NAME = "keras-openseg-notebook"
BUDGET_SECONDS = 40
CELL_TIMEOUT_SECONDS = 600


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory):
    """A kernelspec for this interpreter, a shared working folder and a tfds data dir, as env vars."""
    root = tmp_path_factory.mktemp("notebooks")
    spec_dir = root / "jupyter" / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "keras_openseg tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    env = {
        "JUPYTER_PATH": str(root / "jupyter"),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "IPYTHONDIR": str(root / "ipython"),
        "KERAS_BACKEND": keras.backend.backend(),
        "KERAS_OPENSEG_NOTEBOOK_TINY": "1",
        "TFDS_DATA_DIR": str(root / "tensorflow_datasets"),
        "ADE20K_MANUAL_DIR": str(root / "no_ade20k_here"),
        "MPLBACKEND": "Agg",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        # The notebooks build the same tiny models: on JAX, a compilation cache shared by the kernels lets
        # the later notebooks reuse the earlier ones' XLA compilations (variable initializers, layers).
        "JAX_COMPILATION_CACHE_DIR": str(root / "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    work_dir = root / "work"
    work_dir.mkdir()
    return env, work_dir


def test_notebooks_are_valid_and_colab_ready():
    assert [path.name for path in NOTEBOOKS] == [
        "01_quickstart.ipynb",
        "02_train_openseg_shapes.ipynb",
        "03_evaluate_benchmark.ipynb",
        "04_custom_mask_pooling.ipynb",
    ]
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        sources = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
        assert "google.colab" in sources[0] and "pip install" in sources[0], path.name
        assert "KERAS_BACKEND" in sources[1] and "KERAS_OPENSEG_NOTEBOOK_TINY" in sources[1], path.name
        # keras must not be imported before the backend cell has set KERAS_BACKEND.
        assert not re.search(r"^\s*(import|from)\s+keras", sources[0], re.MULTILINE), path.name
        # keras-openseg is not on the package index: the cell installs it from a named source (repository or
        # wheel), never by its bare name.
        assert "keras-openseg[demo] @ {SOURCE}" in sources[0] and "SOURCE = " in sources[0], path.name
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), path.name


def _cell_seconds(notebook):
    """Wall seconds of each code cell, from the timing metadata nbclient records."""
    seconds = []
    for cell in notebook.cells:
        timing = cell.get("metadata", {}).get("execution", {})
        if cell.cell_type == "code" and "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            start, end = (
                datetime.datetime.fromisoformat(timing[key].replace("Z", "+00:00"))
                for key in ("iopub.execute_input", "shell.execute_reply")
            )
            seconds.append(round((end - start).total_seconds(), 1))
    return seconds


# The notebooks call the package's public API (train, evaluate, segment, presets), whose pieces are tested on
# every backend; executing the four notebooks costs 2-4 minutes of CPU per backend, so they run on torch's pass
# (the cheapest) and KERAS_OPENSEG_ALL_BACKENDS=1 runs them on TensorFlow and JAX as well.
@pytest.mark.slow
@pytest.mark.end_to_end("torch", covered_by="the API the notebooks call is tested on every backend")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs(path, notebook_env, monkeypatch):
    env, work_dir = notebook_env
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OPENSEG_PRESET", raising=False)
    notebook = nbformat.read(path, as_version=4)
    # A last cell reports the kernel's CPU time, which (unlike the wall time) does not grow when other jobs
    # share the machine.
    notebook.cells.append(
        nbformat.v4.new_code_cell(
            "import resource\n"
            "usage = resource.getrusage(resource.RUSAGE_SELF)\n"
            "print(f'cpu_seconds={usage.ru_utime + usage.ru_stime:.1f}')"
        )
    )
    client = nbclient.NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_SECONDS,
        resources={"metadata": {"path": str(work_dir)}},
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    cpu = notebook.cells[-1]["outputs"][0]["text"].strip()
    print(f"{path.name}: {seconds:.1f} s wall, kernel {cpu} on {keras.backend.backend()}")
    print("  seconds per cell:", _cell_seconds(notebook))
    if seconds > BUDGET_SECONDS:
        warnings.warn(f"{path.name} took {seconds:.0f} s on {keras.backend.backend()} (budget {BUDGET_SECONDS} s)")
    errors = [
        output for cell in notebook.cells for output in cell.get("outputs", []) if output.get("output_type") == "error"
    ]
    assert not errors
    assert os.environ["KERAS_BACKEND"] in "".join(
        output.get("text", "") for output in notebook.cells[2].get("outputs", [])
    ), "the kernel did not run on this test run's backend"
