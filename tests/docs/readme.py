"""The shell commands of README.md, as a user copies them."""

from __future__ import annotations

import re

from tests.e2e.server import REPO_ROOT

README = REPO_ROOT / "README.md"
WRAPPER = "scripts/vodimg"


def shell_blocks(text: str | None = None) -> list[str]:
    """Every ```sh block of the README, with backslash-continued lines joined."""
    text = README.read_text("utf-8") if text is None else text
    return [block.replace("\\\n", " ") for block in re.findall(r"```sh\n(.*?)```", text, re.S)]


def block_after(heading: str, index: int = 0) -> str:
    """The ``index``-th ```sh block of the README section ``## heading``."""
    text = README.read_text("utf-8")
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return shell_blocks(section)[index]


def python_blocks(heading: str) -> list[str]:
    """The ```python blocks of the README section ``## heading``."""
    section = README.read_text("utf-8").split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def sdk_script(section: str, tenant, endpoint: str) -> str:
    """The README's SDK set-up and the python block of ``section``, as a user runs them: with the
    tenant's keys, against ``endpoint``."""
    (setup,) = python_blocks("Using it from the official SDK")
    (flow,) = python_blocks(section)
    keys = f"SECRET_ID, SECRET_KEY, SUB_APP_ID = {tenant.secret_id!r}, {tenant.secret_key!r}, {tenant.sub_app_id}\n"
    return (keys + setup + flow).replace("127.0.0.1:9000", endpoint)


def wrapper_commands() -> list[str]:
    """Each README command (in a block or in inline code) that starts with scripts/vodimg,
    without its comment."""
    text = README.read_text("utf-8")
    lines = [line.split(" #", 1)[0].strip() for block in shell_blocks(text) for line in block.splitlines()]
    lines += re.findall(r"`(" + re.escape(WRAPPER) + r"[^`]*)`", text)
    return sorted({line for line in lines if line.startswith(WRAPPER)})
