"""GroundingDINO (transformers) with a description longer than its text encoder's limit."""

from __future__ import annotations

import pytest
from noise_pictures import noise_pictures
from scripted_models import ScriptedReasoner, make_example

from cot_ground.graph import CoTConfig, build_cot_graph, run_example
from cot_ground.models.base import GroundRequest
from cot_ground.models.registry import build
from cot_ground.models.settings import ModelSettings

SENTENCE = (
    "the weathered red brick lighthouse standing beside twisted grey rocks under a stormy sky "
    "with gulls circling its lantern while waves crash white foam against the narrow jetty"
)
WORDS = SENTENCE.split(" ")
LONG = " ".join(WORDS[i % len(WORDS)] for i in range(130))  # a 130-word description


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> str:
    [path] = noise_pictures(tmp_path_factory.mktemp("long-phrase"), [(120, 80)], seed=3)
    return path


@pytest.mark.slow
def test_a_long_phrase_is_cut_to_max_text_len_and_recorded(tiny_gdino_hf_path, picture):
    grounder = build("gdino-hf", ModelSettings(path=str(tiny_gdino_hf_path)))
    limit = grounder.model.config.max_text_len
    tokens = len(grounder.processor.tokenizer(LONG.lower() + ".")["input_ids"])
    assert len(LONG.split()) == 130 and tokens > limit  # the case that used to fail
    long_result, short_result = grounder.ground(
        [GroundRequest(image=picture, phrase=LONG), GroundRequest(image=picture, phrase="a dog")]
    )
    assert long_result.candidates and long_result.notes == {
        "text_truncated": {"tokens": tokens, "kept": limit}
    }
    assert short_result.notes == {}
    # the same request alone gives the same answer as in the batch
    [alone] = grounder.ground([GroundRequest(image=picture, phrase=LONG)])
    assert alone.candidates[0].box.to_list() == pytest.approx(
        long_result.candidates[0].box.to_list(), abs=1e-5
    )
    # through the CoT graph, the truncation is in the step-2 trace
    example = make_example("group_grounding", n_images=2, target=1, folder=str(picture)[:-6])
    example = example.model_copy(update={"images": [picture, picture]})
    reasoner = ScriptedReasoner([f'{{"image": 2, "description": "{LONG}"}}'])
    graph = build_cot_graph(reasoner, grounder, config=CoTConfig())
    prediction = run_example(graph, example)
    [ground_step] = [s for s in prediction.trace if s.node == "ground"]
    assert ground_step.parsed["grounder_notes"]["text_truncated"]["kept"] == limit
    assert prediction.error is None
