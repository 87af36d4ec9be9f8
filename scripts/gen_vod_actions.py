"""Writes vodimg/spec/vod-actions.json: the names of every VOD 2018-07-17 action, taken from the
``actions`` keys of the api.json that the installed tccli ships (the official CLI's spec).

Run with the test extra installed: ``.venv/bin/python scripts/gen_vod_actions.py``.
"""

from __future__ import annotations

import json
from importlib import metadata, resources
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "vodimg" / "spec" / "vod-actions.json"


def main() -> None:
    api = json.loads(resources.files("tccli").joinpath("services/vod/v20180717/api.json").read_text("utf-8"))
    assert api["metadata"]["apiVersion"] == "2018-07-17", api["metadata"]
    document = {
        "note": "Every action of Tencent Cloud VOD API 2018-07-17 (the actions keys of "
                "tccli/services/vod/v20180717/api.json), made by scripts/gen_vod_actions.py.",
        "source": f"tccli {metadata.version('tccli')}",
        "actions": sorted(api["actions"]),
    }
    OUT.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", "utf-8")
    print(f"{OUT}: {len(document['actions'])} actions")


if __name__ == "__main__":
    main()
