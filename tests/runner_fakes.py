"""Scripted adapters built from ModelSettings (so experiment configs can name them), a call log
shared by all of them, and a small MIG-Bench-layout benchmark of real PNG files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image

from cot_ground.boxes import Box
from cot_ground.images import open_rgb
from cot_ground.models import registry
from cot_ground.models.base import (
    ChatRequest,
    EndToEndResult,
    GroundRequest,
    GroundResult,
    ModelLoadError,
    ReasonerResult,
)
from cot_ground.models.settings import ModelSettings
from cot_ground.records import Candidate, ParseStatus

# (adapter name, number of requests) per call, in call order
CALLS: list[tuple[str, int]] = []
# adapter name -> call number at which it sends SIGINT to this process (what Ctrl-C does)
SIGINT_AT: dict[str, int] = {}
_LOCK = threading.Lock()


def reset() -> None:
    """Forget logged calls and every adapter the registry built."""
    CALLS.clear()
    SIGINT_AT.clear()
    registry.clear_cache()


def calls_of(name: str) -> list[int]:
    """Batch sizes of each call of adapter ``name``."""
    return [n for who, n in CALLS if who == name]


class _Fake:
    def __init__(self, settings: ModelSettings, default_name: str) -> None:
        self.options = dict(settings.options)
        self.name = self.options.pop("name", default_name)
        self.settings: dict[str, Any] = settings.model_dump(mode="json")
        self.delay = float(self.options.get("delay", 0.0))
        if settings.path is not None and not Path(settings.path).is_dir():
            raise ModelLoadError(f"model folder not found: {settings.path}")

    def _die_if_asked(self) -> None:
        """``options.die_file``: while that file exists this process kills itself (SIGKILL) on a
        call; a file holding ``once`` is deleted by the first process that dies."""
        die = self.options.get("die_file")
        if not die or not os.path.exists(die):
            return
        if Path(die).read_text().strip() == "once":
            try:
                os.unlink(die)
            except FileNotFoundError:  # another process took it first
                return
        os.kill(os.getpid(), signal.SIGKILL)

    def _log(self, requests: list[Any]) -> None:
        self._die_if_asked()
        with _LOCK:
            CALLS.append((self.name, len(requests)))
        if self.delay:
            time.sleep(self.delay)
        for request in requests:
            paths = getattr(request, "images", None) or [request.image]
            for path in paths:
                if any(bad in path for bad in self.options.get("raise_on", [])):
                    raise RuntimeError(f"scripted failure on {path}")
                open_rgb(path)  # a corrupt file raises ImageLoadError, as in real adapters
        if SIGINT_AT.get(self.name) == len(calls_of(self.name)):
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does


class FakeReasoner(_Fake):
    """Step 1: always names image ``options.image`` (1-based) with a fixed description
    (``options.description``, default "the red square")."""

    def reason(self, requests: list[ChatRequest]) -> list[ReasonerResult]:
        self._log(requests)
        image = int(self.options.get("image", 1))
        description = str(self.options.get("description", "the red square"))
        text = json.dumps({"image": image, "description": description})
        return [ReasonerResult.from_text(text, r, self.settings) for r in requests]


class FakeGrounder(_Fake):
    """Step 2: the bounding box of the reddest pixels of the image (a real, content-based box)."""

    def ground(self, requests: list[GroundRequest]) -> list[GroundResult]:
        self._log(requests)
        out = []
        shrink = float(self.options.get("shrink", 0.0))
        for request in requests:
            im = open_rgb(request.image)
            w, h = im.size
            red = [
                (x, y)
                for y in range(h)
                for x in range(w)
                if (lambda p: p[0] > 200 and p[1] < 60)(im.getpixel((x, y)))
            ]
            if not red:
                out.append(GroundResult(status=ParseStatus.NO_BOX, settings=self.settings))
                continue
            xs, ys = [p[0] for p in red], [p[1] for p in red]
            box = Box.from_pixels(
                [min(xs) + shrink, min(ys) + shrink, max(xs) + 1, max(ys) + 1], w, h
            )
            out.append(
                GroundResult(
                    candidates=[Candidate(box=box, score=0.9, label="red")],
                    raw_text=str(box.to_list()),
                    status=ParseStatus.OK,
                    settings=self.settings,
                )
            )
        return out


class FakeEndToEnd(_Fake):
    """End to end: a fixed box on image ``options.image`` (1-based)."""

    def predict(self, requests: list[ChatRequest]) -> list[EndToEndResult]:
        self._log(requests)
        image = int(self.options.get("image", 1))
        box = Box.from_unit([0.25, 0.25, 0.5, 0.5])
        return [
            EndToEndResult(
                raw_text=f"image {image} [250, 250, 500, 500]",
                image_index=image - 1,
                box=box,
                status=ParseStatus.OK,
                settings=self.settings,
            )
            for _ in requests
        ]


def build_reasoner(settings: ModelSettings) -> FakeReasoner:
    return FakeReasoner(settings, "fake-reasoner")


def build_grounder(settings: ModelSettings) -> FakeGrounder:
    return FakeGrounder(settings, "fake-grounder")


def build_e2e(settings: ModelSettings) -> FakeEndToEnd:
    return FakeEndToEnd(settings, "fake-e2e")


def register_fakes() -> None:
    """Make the fakes buildable by registry name."""
    registry.register("fake-reasoner", "reasoner", "runner_fakes:build_reasoner")
    registry.register("fake-grounder", "grounder", "runner_fakes:build_grounder")
    registry.register("fake-e2e", "e2e", "runner_fakes:build_e2e")


def unregister_fakes() -> None:
    """Undo :func:`register_fakes`."""
    for name in ("fake-reasoner", "fake-grounder", "fake-e2e"):
        registry.ADAPTERS.pop(name, None)


GROUP_Q = (
    "Please find the bounding box coordinates for the area described by: "
    "<|object_ref_start|>the red square number {i}<|object_ref_end|>."
)
COMMON_Q = (
    "These images share one object in common. Recognize and locate this object in the 2th image. "
    "(item {i})"
)


def make_benchmark(folder: Path, n: int = 12, corrupt: int | None = None) -> Path:
    """``folder/MIG_data.json`` + ``folder/images/*.png``: ``n`` two-image items, a red square in
    the second image; item ``corrupt`` gets an unreadable second image."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        names = []
        for j in range(2):
            im = Image.new("RGB", (32, 24), (30 + 5 * i, 90, 140))
            x0, y0 = 4 + (i % 5) * 3, 3 + (i % 4) * 2
            if j == 1:
                for x in range(x0, x0 + 8):
                    for y in range(y0, y0 + 6):
                        im.putpixel((x, y), (230, 20, 20))
            name = f"images/item{i:03d}_{j}.png"
            im.save(folder / name)
            names.append(f"./{name}")
        if corrupt == i:
            (folder / names[1]).write_bytes(b"not a png")
        task = "group_grounding" if i % 2 else "common_object"
        question = (GROUP_Q if task == "group_grounding" else COMMON_Q).format(i=i)
        x0, y0 = 4 + (i % 5) * 3, 3 + (i % 4) * 2
        item = {
            "task": task,
            "images": names,
            "question": question,
            "answer": [x0 / 32, y0 / 24, (x0 + 8) / 32, (y0 + 6) / 24],
            "need_format": True,
        }
        if task == "group_grounding":
            item["additional_info"] = "It is in the second image."
        items.append(item)
    path = folder / "MIG_data.json"
    path.write_text(json.dumps(items, indent=1))
    return path


def experiment(bench: Path, out: Path, cache_dir: Path, **overrides: Any) -> dict[str, Any]:
    """A config mapping with one CoT pipeline and one end-to-end pipeline on the fakes."""
    config: dict[str, Any] = {
        "name": "fake-run",
        "benchmark": {"file": str(bench), "root": str(bench.parent), "answer_frame": "unit"},
        "models": {
            "reasoner": {"adapter": "fake-reasoner", "options": {"image": 2}},
            "grounder": {"adapter": "fake-grounder"},
            "e2e": {"adapter": "fake-e2e", "options": {"image": 2}},
        },
        "pipelines": {
            "cot": {"kind": "cot", "reasoner": "reasoner", "grounder": "grounder"},
            "e2e": {"kind": "e2e", "model": "e2e"},
        },
        "batch_size": 1,
        "output": str(out),
        "cache": {"dir": str(cache_dir)},
    }
    config.update(overrides)
    return config


def git(repo: Path, *args: str) -> str:
    """Run ``git`` in ``repo`` (a throwaway identity for commits); its stripped stdout."""
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()
