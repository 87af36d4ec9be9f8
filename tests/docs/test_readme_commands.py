"""Every ``scripts/vodimg ...`` command of the README runs as written: the wrapper finds the
command and each option the README gives it (through the command's --help)."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from tests.docs.readme import WRAPPER, shell_blocks, wrapper_commands
from tests.e2e.server import REPO_ROOT


def test_readme_uses_the_wrapper_for_every_vodimg_command():
    commands = wrapper_commands()
    assert any(" tls trust" in line for line in commands) and any(" process " in line for line in commands)
    for block in shell_blocks():
        for line in block.splitlines():
            command = line.split(" #", 1)[0].strip()
            assert not command.startswith(("vodimg ", ".venv/bin/vodimg")), line


@pytest.mark.parametrize("line", wrapper_commands())
def test_readme_command_and_its_options_exist(line):
    words = shlex.split(line)[1:]
    first_option = next((i for i, word in enumerate(words) if word.startswith("-")), len(words))
    subcommand = words[:first_option]  # e.g. ["accounts", "add-app"]
    result = subprocess.run([WRAPPER, *subcommand, "--help"], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    for option in (word for word in words if word.startswith("--") and word != "--help"):
        assert option.split("=")[0] in result.stdout, (line, option)


def test_wrapper_works_from_any_directory(tmp_path):
    result = subprocess.run([str(REPO_ROOT / WRAPPER), "tls", "ca-path", "--data-dir", "here"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "here" / "tls" / "ca.pem")
