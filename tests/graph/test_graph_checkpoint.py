"""A checkpointed run of one example can be loaded back and its history read."""

from __future__ import annotations

import json
import sqlite3

from langgraph.checkpoint.sqlite import SqliteSaver
from scripted_models import ScriptedGrounder, ScriptedReasoner, candidate, make_example

from cot_ground.graph import build_cot_graph, run_example, thread_config
from cot_ground.records import Prediction


def _graph(conn, ex):
    reasoner = ScriptedReasoner(["unsure", '{"image": 2, "description": "a truck"}'])
    grounder = ScriptedGrounder({ex.images[1]: [candidate(0.1, 0.2, 0.3, 0.4)]})
    return build_cot_graph(reasoner, grounder, checkpointer=SqliteSaver(conn))


def test_checkpointed_run_is_replayable(tmp_path):
    db = tmp_path / "checkpoints.sqlite"
    ex = make_example(n_images=3)
    with sqlite3.connect(db, check_same_thread=False) as conn:
        pred = run_example(_graph(conn, ex), ex)

    with sqlite3.connect(db, check_same_thread=False) as conn:  # a fresh process would do this
        graph = _graph(conn, ex)
        state = graph.get_state(thread_config(ex))
        assert Prediction.model_validate(state.values["prediction"]) == pred
        history = list(graph.get_state_history(thread_config(ex)))

    # newest first; one checkpoint per super-step (input + 6 nodes)
    steps = [len(snapshot.values.get("trace", [])) for snapshot in reversed(history)]
    assert steps == sorted(steps) and steps[-1] == len(pred.trace) == 6
    retry_point = next(
        s for s in history if s.values.get("attempt") == 1 and s.next == ("parse_selection",)
    )
    assert retry_point.values["step1_raw"] == "unsure"
    for snapshot in history:  # plain JSON all the way
        json.dumps(snapshot.values)
