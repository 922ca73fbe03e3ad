import subprocess
import sys

import pytest

from keras_openseg import cli


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out
    assert cli.main([]) == 2  # no command: the help, and a usage-error status


def test_unknown_command_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        cli.main(["trian"])
    assert "unknown command 'trian'" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_module_defines_its_arguments(command):
    import importlib

    module = importlib.import_module(cli.COMMANDS[command][0])
    assert callable(module.add_arguments) and callable(module.run)


def test_console_script_help_runs():
    result = subprocess.run(
        [sys.executable, "-m", "keras_openseg.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "build-dataset" in result.stdout


BACKEND_MODULES = ("tensorflow", "jax", "keras", "keras_hub", "torch")


@pytest.mark.parametrize("command", [None] + sorted(cli.COMMANDS))
def test_help_loads_no_backend(command):
    """`keras-openseg --help` and `keras-openseg COMMAND --help` stay fast: no Keras backend is imported.

    Each in a fresh interpreter: `import keras_openseg.cli`, the top-level parser and the command's parser.
    """
    script = (
        "import sys\n"
        "from keras_openseg import cli\n"
        "cli.build_parser()\n"
        + (f"cli.build_command_parser({command!r})\n" if command else "")
        + f"print([m for m in {BACKEND_MODULES!r} if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]", f"{command or '--help'} loads {result.stdout.strip()}"


def test_public_names_load_on_first_use():
    import keras_openseg

    for name in keras_openseg.__all__:
        assert name in dir(keras_openseg)
        assert getattr(keras_openseg, name) is not None
    from keras_openseg import OpenSegModel
    from keras_openseg.models import OpenSegModel as defined

    assert OpenSegModel is defined and keras_openseg.OpenSegModel is defined
    assert not hasattr(keras_openseg, "no_such_name")


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: keras-openseg {command}") and "--debug" in out


def test_debug_is_a_global_flag(capsys):
    assert cli.main(["--debug", "--help"]) == 0
    assert "--debug" in capsys.readouterr().out


def test_error_line_is_one_line_and_bounded():
    assert cli.error_line(ValueError("bad\n  input\n")) == "keras-openseg: error: bad input"
    long = ValueError("Dataset nope not found.\n" + "\n".join(f"\t- dataset_{i}" for i in range(500)))
    assert cli.error_line(long) == "keras-openseg: error: Dataset nope not found. (--debug shows the whole message)"
    assert cli.error_line(FileNotFoundError()) == "keras-openseg: error: FileNotFoundError"
