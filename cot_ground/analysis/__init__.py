"""Analysis of run folders: ``load_run``, score tables, failure attribution, paired statistics,
charts and the HTML report (see ``docs/analysis.md``)."""

from __future__ import annotations

from cot_ground.analysis.load import load_run
from cot_ground.analysis.report import build_report

__all__ = ["build_report", "load_run"]
