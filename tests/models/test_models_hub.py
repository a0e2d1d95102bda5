"""Model paths given as Hugging Face Hub ids, resolved offline from a pre-filled cache folder with
the real layout (``models--org--name/refs/<ref>``, ``snapshots/<commit>/...``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import runner_fakes as rf
import yaml

from cot_ground.models import hf_loading
from cot_ground.models.base import ModelLoadError
from cot_ground.models.registry import build
from cot_ground.models.settings import ModelSettings

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


def fill_cache(cache: Path, repo_id: str, folder: Path, commit: str, ref: str = "main") -> Path:
    """Put ``folder`` in ``cache`` as snapshot ``commit`` of model ``repo_id``, named by ``ref``;
    files are blobs linked from the snapshot, as ``huggingface_hub`` stores them."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for i, file in enumerate(sorted(p for p in folder.rglob("*") if p.is_file())):
        blob = repo / "blobs" / f"{commit[:8]}-{i}"
        shutil.copyfile(file, blob)
        target = snapshot / file.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(blob)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_chat_paths, tiny_gdino_hf_path):
    cache = tmp_path / "hub"
    fill_cache(cache, "tiny-org/internvl", tiny_chat_paths["internvl"], COMMIT)
    fill_cache(cache, "tiny-org/internvl", tiny_chat_paths["internvl"], OTHER, ref="v2")
    fill_cache(cache, "tiny-org/gdino", tiny_gdino_hf_path, OTHER)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_hub_ids_resolve_to_cached_snapshots_with_their_commit(hub_cache: Path):
    src = hf_loading.resolve_model_source("tiny-org/internvl")
    assert src.hub_id == "tiny-org/internvl" and src.revision is None and src.commit == COMMIT
    assert src.path == (hub_cache / "models--tiny-org--internvl" / "snapshots" / COMMIT).resolve()
    tagged = hf_loading.resolve_model_source("tiny-org/internvl@v2")
    assert tagged.revision == "v2" and tagged.commit == OTHER
    pinned = hf_loading.resolve_model_source(f"tiny-org/internvl@{COMMIT}")
    assert pinned.commit == COMMIT
    assert src.record() == {
        "path": str(src.path),
        "hub_id": "tiny-org/internvl",
        "revision": None,
        "commit": COMMIT,
    }


def test_an_id_missing_from_the_cache_offline_is_one_clear_error(hub_cache: Path):
    with pytest.raises(ModelLoadError, match=r"'tiny-org/absent'.*HF_HUB_OFFLINE") as err:
        hf_loading.resolve_model_source("tiny-org/absent")
    assert str(hub_cache) in str(err.value)
    with pytest.raises(ModelLoadError, match="'tiny-org/internvl' at revision 'v9'"):
        hf_loading.resolve_model_source("tiny-org/internvl@v9")


def test_local_folders_win_and_non_ids_stay_paths(tmp_path: Path, monkeypatch, hub_cache):
    local = tmp_path / "tiny-org" / "internvl"
    local.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    src = hf_loading.resolve_model_source("tiny-org/internvl")
    assert src.path == local.resolve() and src.hub_id is None and src.commit is None
    for spec in ("/abs/model", "./rel/model", "a/b/c", "../x/y", "~/m"):
        assert hf_loading.parse_hub_id(spec) is None
    assert hf_loading.parse_hub_id("Qwen/Qwen2-VL-7B-Instruct@main") == (
        "Qwen/Qwen2-VL-7B-Instruct",
        "main",
    )


def test_adapters_load_hub_ids_offline(hub_cache: Path):
    reasoner = build("hf-chat-reasoner", ModelSettings(path="tiny-org/internvl", device="cpu"))
    assert reasoner.settings["path"].endswith(f"snapshots/{COMMIT}")
    assert reasoner.settings["family"] == "internvl"
    grounder = build("gdino-hf", ModelSettings(path="tiny-org/gdino", device="cpu"))
    assert grounder.settings["path"].endswith(f"snapshots/{OTHER}")


def test_check_model_source_lists_problems_without_loading(hub_cache: Path, tmp_path: Path):
    assert hf_loading.check_model_source("tiny-org/internvl") == []
    assert hf_loading.check_model_source("tiny-org/gdino") == []
    (missing,) = hf_loading.check_model_source("tiny-org/absent")
    assert "tiny-org/absent" in missing
    broken = hub_cache / "models--tiny-org--internvl" / "snapshots" / OTHER / "config.json"
    broken.unlink()
    (incomplete,) = hf_loading.check_model_source("tiny-org/internvl@v2")
    assert "config.json" in incomplete and OTHER in incomplete
    (absent,) = hf_loading.check_model_source(str(tmp_path / "nowhere"))
    assert "not found" in absent
    assert "UNSET_VAR_14" in hf_loading.check_model_source("${UNSET_VAR_14}/m")[0]


def test_online_an_uncached_id_is_left_for_download(hub_cache: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert hf_loading.check_model_source("tiny-org/not-cached-yet") == []


@pytest.mark.slow
def test_a_config_naming_hub_ids_runs_offline_and_records_commits(hub_cache: Path, tmp_path: Path):
    from cot_ground.runner.config import load_config
    from cot_ground.runner.run import run_experiment
    from cot_ground.runner.store import RunFolder

    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    config = {
        "name": "hub_ids",
        "benchmark": {"file": str(bench), "root": str(bench.parent), "answer_frame": "unit"},
        "models": {
            "reasoner": {
                "adapter": "hf-chat-reasoner",
                "path": "tiny-org/internvl",
                "device": "cpu",
                "max_new_tokens": 4,
            },
            "grounder": {"adapter": "gdino-hf", "path": "tiny-org/gdino", "device": "cpu"},
        },
        "pipelines": {"cot": {"kind": "cot", "reasoner": "reasoner", "grounder": "grounder"}},
        "cache": {"enabled": False},
    }
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config))
    summary = run_experiment(load_config(path), out=tmp_path / "run")
    assert summary.pipelines["cot"].written == 2
    folder = RunFolder(tmp_path / "run")
    models = folder.read_manifest()["models"]
    assert models["reasoner"]["hub_id"] == "tiny-org/internvl"
    assert models["reasoner"]["commit"] == COMMIT
    assert models["grounder"]["commit"] == OTHER
    assert models["grounder"]["path"].endswith(f"snapshots/{OTHER}")
    for record in folder.read_predictions("cot"):
        assert record["error"] is None or record["error"]["category"] != "model_error"


@pytest.mark.parametrize(
    ("config", "env", "hub_id"),
    [
        ("cot_internvl3_gdino", "INTERNVL3_PATH", "OpenGVLab/InternVL3-8B-hf"),
        ("cot_llava_onevision_gdino", "LLAVA_OV_PATH", "llava-hf/llava-onevision-qwen2-7b-ov-hf"),
    ],
)
def test_shipped_chat_configs_name_hub_ids_unless_a_folder_is_given(
    monkeypatch, config, env, hub_id
):
    from cot_ground.paths import REPO_ROOT
    from cot_ground.runner.config import load_config

    path = Path(REPO_ROOT) / "experiments" / f"{config}.yaml"
    for var in ("MIGBENCH_FILE", "MIGBENCH_ROOT"):
        monkeypatch.setenv(var, f"/env/{var}")
    for var in (env, "GDINO_PATH"):
        monkeypatch.delenv(var, raising=False)
    models = load_config(path).models
    reasoner = next(m for m in models.values() if m.adapter == "hf-chat-reasoner")
    assert reasoner.path == hub_id
    assert models["gdino"].path == "IDEA-Research/grounding-dino-base"
    monkeypatch.setenv(env, "/models/local")
    models = load_config(path).models
    assert (
        next(m for m in models.values() if m.adapter == "hf-chat-reasoner").path == "/models/local"
    )


def test_online_an_id_is_fetched_into_the_cache(monkeypatch, tmp_path: Path):
    import huggingface_hub

    calls = []
    snapshot = tmp_path / "models--org--name" / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    src = hf_loading.resolve_model_source("org/name@v1")
    ((repo_id, kwargs),) = calls
    assert repo_id == "org/name" and kwargs["revision"] == "v1"
    assert kwargs["local_files_only"] is False
    assert kwargs["cache_dir"] == str(tmp_path / "home" / "hub")
    assert "*.onnx" in kwargs["ignore_patterns"]
    assert src.commit == COMMIT and src.path == snapshot.resolve()

    def failing(repo_id, **kwargs):
        raise OSError("connection refused")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", failing)
    with pytest.raises(ModelLoadError, match=r"'org/name'.*could not be downloaded.*refused"):
        hf_loading.resolve_model_source("org/name")
