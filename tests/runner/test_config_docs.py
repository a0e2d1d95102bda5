"""docs/running.md's table of shipped configs has one row for every ``experiments/*.yaml``."""

from __future__ import annotations

import re

from repo_paths import REPO


def test_every_shipped_config_has_a_row_in_running_md() -> None:
    text = (REPO / "docs" / "running.md").read_text(encoding="utf-8")
    section = text.split("## Shipped configs (`experiments/`)", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+\.yaml)` \|", section, flags=re.MULTILINE)
    shipped = sorted(p.name for p in (REPO / "experiments").glob("*.yaml"))
    assert sorted(rows) == shipped
