"""Graph hygiene: each invocation starts from a fresh state, and the recursion limit comes from
the config, so a long retry/fallback chain never meets LangGraph's default limit."""

from __future__ import annotations

import os
import subprocess
import sys

from langgraph.checkpoint.memory import InMemorySaver
from repo_paths import TESTS
from scripted_models import (
    ScriptedEndToEnd,
    ScriptedGrounder,
    ScriptedReasoner,
    candidate,
    make_example,
)

from cot_ground.graph import CoTConfig, build_cot_graph, build_e2e_graph, run_example
from cot_ground.graph.cot import cot_recursion_limit
from cot_ground.graph.e2e import E2E_RECURSION_LIMIT

GOOD = '{"image": 2, "description": "a truck"}'


def test_same_example_twice_on_one_thread_starts_afresh() -> None:
    ex = make_example(n_images=3)
    reasoner = ScriptedReasoner(["unsure", GOOD])  # first run needs the re-format prompt
    grounder = ScriptedGrounder({ex.images[1]: [candidate(0.1, 0.2, 0.3, 0.4)]})
    graph = build_cot_graph(reasoner, grounder, checkpointer=InMemorySaver())
    first = run_example(graph, ex)
    second = run_example(graph, ex)  # same thread id: the example id
    assert [s.node for s in first.trace] == [
        "select_and_describe",
        "parse_selection",
        "select_and_describe",
        "parse_selection",
        "ground",
        "finalize",
    ]
    assert [s.node for s in second.trace] == [
        "select_and_describe",
        "parse_selection",
        "ground",
        "finalize",
    ]
    # the second run sent the first step-1 prompt again, not the re-format prompt
    prompts = [r.prompt for r in reasoner.requests]
    assert len(prompts) == 3 and prompts[2] == prompts[0] != prompts[1]
    assert second.trace[0].attempt == 0 and second.fallbacks == []


def test_e2e_twice_on_one_thread_keeps_one_trace() -> None:
    ex = make_example(n_images=2)
    model = ScriptedEndToEnd(candidate(0.1, 0.1, 0.4, 0.4).box, "image 2 [100,100,400,400]", 1)
    graph = build_e2e_graph(model, checkpointer=InMemorySaver())
    run_example(graph, ex)
    again = run_example(graph, ex)
    assert [s.node for s in again.trace] == ["predict", "finalize"]


def test_recursion_limit_follows_the_config() -> None:
    reasoner, grounder = ScriptedReasoner([GOOD]), ScriptedGrounder({})
    small = build_cot_graph(reasoner, grounder)
    assert small.config["recursion_limit"] == cot_recursion_limit(CoTConfig()) == 7
    long_cfg = CoTConfig(max_retries=5, fallbacks=["next-image"] * 30)
    big = build_cot_graph(reasoner, grounder, config=long_cfg)
    assert big.config["recursion_limit"] == 2 * 6 + 1 + 30 + 1 + 1
    model = ScriptedEndToEnd(None, "nothing")
    assert build_e2e_graph(model).config["recursion_limit"] == E2E_RECURSION_LIMIT


_LONG_RUN = """
import sys
sys.path.insert(0, {tests!r})
from scripted_models import ScriptedGrounder, ScriptedReasoner, make_example
from cot_ground.graph import CoTConfig, build_cot_graph, run_example
config = CoTConfig(max_retries=5, fallbacks=["next-image"] * 30)
reasoner = ScriptedReasoner(["unsure"] * 5 + [{good!r}])
pred = run_example(build_cot_graph(reasoner, ScriptedGrounder({{}}), config=config),
                   make_example(n_images=3))
print(len(pred.trace), pred.error.category.value)
"""


def test_longest_chain_runs_under_the_old_default_limit_of_25() -> None:
    code = _LONG_RUN.format(tests=str(TESTS), good=GOOD)
    env = {**os.environ, "LANGGRAPH_DEFAULT_RECURSION_LIMIT": "25"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    steps, category = done.stdout.split()
    assert int(steps) == 44 and category == "no_box"  # 12 step-1 nodes, ground, 30 fallbacks
