"""README "Using it from tccli", followed literally for a tccli installed in a Python of its own
(not the project's .venv): ``scripts/vodimg tls trust`` must edit that Python's certifi bundle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import certifi
import pytest

from tests.docs.readme import block_after
from tests.e2e.server import REPO_ROOT, Server
from vodimg.cli.tls import script_interpreter
from vodimg.wire.tls import BEGIN_MARKER


def tccli_in_own_python(root: Path) -> tuple[Path, Path]:
    """A venv with its own certifi and a ``tccli`` script run by that venv's Python; tccli's other
    packages come from the project's .venv through a .pth file. Returns (bin dir, its bundle)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    site = next((root / "lib").glob("python3*/site-packages"))
    shutil.copytree(Path(certifi.__file__).parent, site / "certifi")
    (site / "project.pth").write_text(str(Path(certifi.__file__).parents[1]) + "\n")
    project_tccli = Path(shutil.which("tccli", path=str(Path(sys.executable).parent)))
    body = project_tccli.read_text().split("\n", 1)[1]
    tccli = root / "bin" / "tccli"
    tccli.write_text(f"#!{root / 'bin' / 'python'}\n{body}")
    tccli.chmod(0o755)
    return root / "bin", site / "certifi" / "cacert.pem"


def readme_commands(data_dir: Path, tls_port: int) -> str:
    """The README's second tccli block, for this data directory and port."""
    block = block_after("Using it from tccli", 1)
    assert "--data-dir data" in block and "data/first-start-key.json" in block and "127.0.0.1:9443" in block
    return (block.replace("--data-dir data", f"--data-dir {data_dir}")
            .replace("data/first-start-key.json", f"{data_dir}/first-start-key.json")
            .replace("127.0.0.1:9443", f"127.0.0.1:{tls_port}"))


@pytest.mark.slow
def test_readme_tccli_steps_work_for_a_tccli_outside_the_project(tmp_path):
    bin_dir, bundle = tccli_in_own_python(tmp_path / "tccli-python")
    project_bundle = Path(certifi.where())
    project_before = project_bundle.read_bytes()
    server = Server(tmp_path / "data", tls=True).start()  # no key given: first-start-key.json
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path)}

    def run(script: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                              cwd=REPO_ROOT, env=env, timeout=180)

    try:
        result = run(readme_commands(server.data_dir, server.tls_port))
        assert result.returncode == 0, result.stdout + result.stderr
        assert '"TotalCount"' in result.stdout and '"RequestId"' in result.stdout
        assert f"added to {bundle}" in result.stdout  # says which bundle it changed
        assert bundle.read_text().count(BEGIN_MARKER) == 1
        assert project_bundle.read_bytes() == project_before  # not the project's own Python

        again = run(readme_commands(server.data_dir, server.tls_port))
        assert again.returncode == 0 and f"already in {bundle}" in again.stdout
        assert bundle.read_text().count(BEGIN_MARKER) == 1

        wrong = run(readme_commands(server.data_dir, server.tls_port).replace('"$SECRET_KEY"', "w" * 32))
        assert "AuthFailure.SignatureFailure" in wrong.stdout + wrong.stderr

        # --tccli PATH reaches the same bundle without PATH; untrust takes it too
        env["PATH"] = os.environ["PATH"]
        untrust = run(f"scripts/vodimg tls untrust --tccli {bin_dir / 'tccli'}")
        assert untrust.returncode == 0 and f"removed from {bundle}" in untrust.stdout, untrust.stderr
        assert BEGIN_MARKER not in bundle.read_text()
        refused = run(readme_commands(server.data_dir, server.tls_port).replace(
            "scripts/vodimg tls trust", "true").replace("tccli vod", f"{bin_dir / 'tccli'} vod"))
        assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stdout + refused.stderr
    finally:
        server.stop()
        project_bundle.write_bytes(project_before)


def test_script_interpreter_reads_the_forms_pip_writes(tmp_path):
    direct = tmp_path / "direct"
    direct.write_text("#!/opt/tools/venv/bin/python3.11\nimport sys\n")
    assert script_interpreter(direct) == Path("/opt/tools/venv/bin/python3.11")
    long = tmp_path / "long"  # pip's form for an interpreter path too long for #!
    long.write_text("#!/bin/sh\n'''exec' \"/very/long/path/bin/python\" \"$0\" \"$@\"\n' '''\nimport sys\n")
    assert script_interpreter(long) == Path("/very/long/path/bin/python")
    via_env = tmp_path / "env"
    via_env.write_text("#!/usr/bin/env python3\n")
    assert script_interpreter(via_env) == Path(shutil.which("python3"))


def test_trust_without_any_tccli_says_what_to_do(tmp_path):
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    result = subprocess.run([str(REPO_ROOT / "scripts" / "vodimg"), "tls", "trust", "--data-dir", "data"],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 1
    assert "no tccli on the PATH" in result.stderr and "--tccli PATH" in result.stderr
    assert not (tmp_path / "data").exists()  # nothing made before the bundle is known
