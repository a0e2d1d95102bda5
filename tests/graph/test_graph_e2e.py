"""End-to-end graph: same record and trace shape as the CoT graph."""

from __future__ import annotations

from scripted_models import RaisingAdapter, ScriptedEndToEnd, make_example

from cot_ground.boxes import Box
from cot_ground.graph import E2EConfig, build_e2e_graph, initial_state, run_example
from cot_ground.records import ErrorCategory, ParseStatus, TraceStep, text_hash

FORMAT = "Format:<|box_start|>(x1,y1),(x2,y2)<|box_end|>. Don't generate addtional words."


def test_e2e_record_and_trace_shape():
    ex = make_example("group_grounding", n_images=4)
    box = Box.from_qwen1000([238, 363, 412, 561])
    model = ScriptedEndToEnd(box, "(238,363),(412,561)")
    pred = run_example(build_e2e_graph(model), ex)

    assert model.requests[0].prompt == ex.question + FORMAT  # as in the released logs
    assert model.requests[0].images == ex.images
    assert pred.pipeline == "e2e-migician" and pred.prompt_variant == "migician"
    assert pred.box == box and pred.status is ParseStatus.OK and pred.error is None
    assert pred.prompt_hash == text_hash(ex.question + FORMAT)
    assert [s.node for s in pred.trace] == ["predict", "finalize"]
    predict = pred.trace[0]
    assert isinstance(predict, TraceStep) and predict.raw_output == "(238,363),(412,561)"
    assert predict.prompt_hash == pred.prompt_hash and predict.images == ex.images
    assert predict.parsed["box"] == box.model_dump() and predict.settings == {"scripted": True}
    assert set(pred.timing) == {"predict", "finalize", "total"}


def test_e2e_no_box_and_model_error():
    ex = make_example("diff", 2)
    pred = run_example(build_e2e_graph(ScriptedEndToEnd(None, "I see no difference")), ex)
    assert pred.box is None and pred.status is ParseStatus.NO_BOX
    assert pred.raw_text == "I see no difference"
    assert (
        pred.error.category is ErrorCategory.NO_BOX and "I see no difference" in pred.error.message
    )

    pred = run_example(build_e2e_graph(RaisingAdapter(RuntimeError("boom"))), ex)
    assert pred.error.category is ErrorCategory.MODEL and "boom" in pred.error.message
    assert [s.node for s in pred.trace] == ["predict", "finalize"]


def test_e2e_streams_updates_and_custom_pipeline_name():
    ex = make_example("diff", 2)
    graph = build_e2e_graph(
        ScriptedEndToEnd(Box.from_unit([0, 0, 1, 1]), "(0,0),(999,999)"),
        config=E2EConfig(pipeline="migician-7b"),
    )
    updates = list(graph.stream(initial_state(ex), stream_mode="updates"))
    assert [next(iter(u)) for u in updates] == ["predict", "finalize"]
    assert updates[-1]["finalize"]["prediction"]["pipeline"] == "migician-7b"


def test_e2e_records_the_calibration_the_model_applied():
    ex = make_example("diff", 2)
    model = ScriptedEndToEnd(Box.from_unit([0.1, 0.1, 0.5, 0.5]), "(100,100),(500,500)")
    assert run_example(build_e2e_graph(model), ex).calibration is None
    model.settings = {"calibration": "migician-y"}
    assert run_example(build_e2e_graph(model), ex).calibration == "migician-y"
