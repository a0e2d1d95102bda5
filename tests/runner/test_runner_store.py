"""Append-only JSONL store: torn tails, duplicates, the folder lock, shard slices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cot_ground.runner.shard import parse_shard, select_shard
from cot_ground.runner.store import JsonlAppender, RunFolder, RunFolderError, read_jsonl


def test_appender_cuts_a_torn_tail_and_never_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    with JsonlAppender(path, "example_id") as store:
        assert store.append({"example_id": "a", "v": 1})
        assert store.append({"example_id": "b", "v": 2})
        assert not store.append({"example_id": "a", "v": 3})
    path.write_bytes(path.read_bytes() + b'{"example_id": "c", "v"')  # killed mid-write
    assert [r["example_id"] for r in read_jsonl(path)] == ["a", "b"]

    with JsonlAppender(path, "example_id") as store:
        assert store.ids == {"a", "b"}
        assert "c" not in store
        assert store.append({"example_id": "c", "v": 4})
        assert not store.append({"example_id": "b", "v": 5})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["v"] for line in lines] == [1, 2, 4]


def test_a_file_holding_only_a_torn_line_is_emptied(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"example_id": "x"')
    with JsonlAppender(path, "example_id") as store:
        assert store.ids == set()
        store.append({"example_id": "x"})
    assert read_jsonl(path) == [{"example_id": "x"}]


def test_reader_skips_broken_lines_and_keeps_the_first_of_each_id(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "v": 1}\nnot json\n{"id": "a", "v": 2}\n{"id": "b", "v": 3}\n')
    assert [r["v"] for r in read_jsonl(path, key="id")] == [1, 3]
    assert len(read_jsonl(path)) == 3
    assert read_jsonl(tmp_path / "absent.jsonl") == []


def test_one_run_folder_is_written_by_one_process_at_a_time(tmp_path: Path) -> None:
    import subprocess
    import sys

    folder = RunFolder(tmp_path / "run")
    with folder.locked():
        code = (
            "import sys; from cot_ground.runner.store import RunFolder, RunFolderError\n"
            f"try:\n    RunFolder({str(folder.path)!r}).locked().__enter__()\n"
            "except RunFolderError as e:\n    print(e); sys.exit(3)\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 3 and "in use by pid" in done.stdout
    with folder.locked():  # released
        pass


def test_manifest_is_replaced_atomically(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    assert folder.read_manifest() is None
    folder.write_manifest({"a": 1})
    folder.write_manifest({"a": 2})
    assert folder.read_manifest() == {"a": 2}
    assert not list(folder.path.glob("*.tmp"))
    folder.manifest_path.write_text("{")
    with pytest.raises(RunFolderError, match=r"run\.json"):
        folder.read_manifest()


def test_shards_are_disjoint_balanced_and_independent_of_order() -> None:
    ids = [f"{i:04x}" for i in range(0, 1000, 7)]
    slices = [select_shard(ids, k, 4, id_of=str) for k in range(1, 5)]
    assert sorted(x for s in slices for x in s) == sorted(ids)
    assert max(map(len, slices)) - min(map(len, slices)) <= 1
    assert select_shard(list(reversed(ids)), 2, 4, id_of=str) == list(reversed(slices[1]))
    assert parse_shard("2/4") == (2, 4) and parse_shard(" 1 / 1 ") == (1, 1)
    for bad in ("0/4", "5/4", "2", "a/b", "1/0"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)
