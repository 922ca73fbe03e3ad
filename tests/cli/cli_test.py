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
