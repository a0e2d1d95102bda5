"""The CLI's log handler follows ``sys.stderr``: a swapped-then-closed stderr leaves no handler
writing into a closed stream."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from cot_ground.cli import run_cmds


def test_log_handler_writes_to_the_current_stderr(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    logger = logging.getLogger("cot_ground")
    handlers, level = list(logger.handlers), logger.level
    swapped = io.StringIO()
    try:
        with monkeypatch.context() as m:  # as a CLI test runner does while it invokes a command
            m.setattr(sys, "stderr", swapped)
            run_cmds._setup_logging()
            logger.info("during the command")
            assert "during the command" in swapped.getvalue()
        swapped.close()
        logger.info("after the command")
        err = capsys.readouterr().err
        assert "after the command" in err and "Logging error" not in err
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
