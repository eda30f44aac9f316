"""Reading an AI-Toolkit run folder, read-only: its config, samples, checkpoints, loss, log.

Facts (docs/trainer.md section 7): samples are `samples/<time_ms>__<step:09d>_<i>.<ext>`
with `i` the index
into `sample.samples` of the config that ran; checkpoints `<name>_<step:09d>.safetensors`
and the final `<name>.safetensors`; `loss_log.db` has `steps`, `metric_keys`, `metrics`.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

SAMPLE_NAME = re.compile(r"^(\d+)__(\d{9})_(\d+)\.(jpg|jpeg|png|webp)$")
IMAGE_EXTS = {"jpg", "jpeg", "png", "webp"}
DEFAULT_KEEP = 5  # AI-Toolkit's max_step_saves_to_keep when the config says nothing
# tqdm's bar: "name:  12%|#2   | 120/1000 [01:23<10:12,  1.44it/s, lr: 1.0e-04 loss: 3.1e-01]"
PROGRESS = re.compile(
    r"(?P<step>\d+)/(?P<total>\d+) \[(?P<elapsed>[\d:]+)<(?P<left>[\d:?]+),\s*"
    r"(?P<rate>[\d.]+|\?)(?P<unit>s/it|it/s)"
)
LOSS = re.compile(r"loss: (?P<loss>[-+\d.eE]+)")
# A run folder may come from anywhere: its files are read within bounds. A trainer's config is
# a few KB; the expanded size counts every alias as a copy (a 400-byte "billion laughs" YAML
# expands to 10^9 nodes); the loss log is read for at most a few seconds.
MAX_CONFIG_BYTES = 1024 * 1024
# Parsing is pure Python, about 50 us an event: the events are counted first, so a hostile
# file costs under a second before it is refused (a real config has a few hundred).
MAX_CONFIG_EVENTS = 5_000
MAX_CONFIG_NODES = 200_000
MAX_CONFIG_DEPTH = 64
MAX_LOSS_ROWS = 2_000_000
MAX_LOSS_SECONDS = 5.0


@dataclass(frozen=True)
class SampleSpec:
    """One entry of `sample.samples`: what sample file `_i` was made from."""

    index: int
    prompt: str
    seed: int | None
    multiplier: float
    width: int
    height: int


@dataclass(frozen=True)
class RunConfig:
    name: str
    steps: int
    save_every: int
    max_keep: int
    sample_every: int
    samples: list[SampleSpec]
    skip_first_sample: bool
    source: str  # where it was read from, said on the board


@dataclass(frozen=True)
class Sample:
    name: str
    step: int
    index: int
    time_ms: int


@dataclass
class Checkpoints:
    by_step: dict[int, Path] = field(default_factory=dict)
    final: Path | None = None


@dataclass(frozen=True)
class LogProgress:
    step: int
    total: int
    rate: float | None  # steps per second
    eta_s: float | None
    loss: float | None


def parse_sample_name(name: str) -> Sample | None:
    """The step and sample index a sample file's name holds, or None for any other file."""
    m = SAMPLE_NAME.match(name)
    if not m:
        return None
    return Sample(name=name, step=int(m[2]), index=int(m[3]), time_ms=int(m[1]))


def config_document(run_dir: Path, recorded_yaml: str | None = None) -> tuple[Any, str] | None:
    """The config the run was started with and where it came from, or None if none is there.

    Atelier's own record comes first, then the AI-Toolkit UI's `.job_config.json`, then the
    `config.yaml` the trainer copies into the run folder when it starts.
    """
    if recorded_yaml:
        doc = _yaml_load(recorded_yaml)
        if doc is not None:
            return doc, "the YAML Atelier started the run with"
    job_json = _read_bounded(run_dir / ".job_config.json")
    if job_json is not None:
        try:
            doc = json.loads(job_json)
            if _depth_within(doc, MAX_CONFIG_DEPTH):
                return doc, ".job_config.json"
        except (ValueError, RecursionError):
            pass
    config_yaml = _read_bounded(run_dir / "config.yaml")
    if config_yaml is not None:
        doc = _yaml_load(config_yaml)
        if doc is not None:
            return doc, "config.yaml"
    return None


def read_config(run_dir: Path, recorded_yaml: str | None = None) -> RunConfig | None:
    """The parts of the run's config the board and the pick need, or None when unreadable."""
    found = config_document(run_dir, recorded_yaml)
    if found is None:
        return None
    doc, source = found
    config = _map(_map(doc).get("config"))
    processes = config.get("process")
    if not isinstance(processes, list) or not processes or not isinstance(processes[0], dict):
        return None
    process = processes[0]
    train = _map(process.get("train"))
    save = _map(process.get("save"))
    sample = _map(process.get("sample"))
    raw_samples = sample.get("samples")
    if not isinstance(raw_samples, list):
        prompts = sample.get("prompts")
        raw_samples = [
            {"prompt": p}
            for p in (prompts if isinstance(prompts, list) else [])
            if isinstance(p, str)
        ]
    base_seed = _int(sample.get("seed"), 0) or 0
    walk = bool(sample.get("walk_seed", False))
    specs = []
    for i, item in enumerate(raw_samples):
        item = _map(item)
        seed = _int(item.get("seed"), None)
        if seed is None:
            seed = base_seed + i if walk else base_seed
        specs.append(
            SampleSpec(
                index=i,
                prompt=str(item.get("prompt") or ""),
                seed=seed,
                multiplier=_float(
                    item.get("network_multiplier", sample.get("network_multiplier")), 1.0
                ),
                width=_int(item.get("width", sample.get("width")), 512) or 512,
                height=_int(item.get("height", sample.get("height")), 512) or 512,
            )
        )
    name = str(config.get("name") or run_dir.name)
    return RunConfig(
        name=name,
        steps=_int(train.get("steps"), 0) or 0,
        save_every=_int(save.get("save_every"), 0) or 0,
        max_keep=_int(save.get("max_step_saves_to_keep"), DEFAULT_KEEP) or DEFAULT_KEEP,
        sample_every=_int(sample.get("sample_every"), 0) or 0,
        samples=specs,
        skip_first_sample=bool(train.get("skip_first_sample", False)),
        source=source,
    )


def list_samples(run_dir: Path) -> list[Sample]:
    """Every finished sample file, oldest step first; partial (.tmp) and empty files skipped."""
    folder = run_dir / "samples"
    found: list[Sample] = []
    try:
        entries = list(_scan(folder))
    except OSError:
        return []
    for entry in entries:
        sample = parse_sample_name(entry.name)
        if sample is None:
            continue
        try:
            if not entry.is_file() or entry.stat().st_size == 0:
                continue
        except OSError:
            continue
        found.append(sample)
    found.sort(key=lambda s: (s.step, s.index, s.time_ms))
    return found


def checkpoints(run_dir: Path, name: str) -> Checkpoints:
    """The run's saved LoRA files: one per kept step, and the final one."""
    out = Checkpoints()
    pattern = re.compile(re.escape(name) + r"(?:_LoRA)?_(\d{9})\.safetensors$")
    try:
        entries = list(_scan(run_dir))
    except OSError:
        return out
    for entry in entries:
        m = pattern.match(entry.name)
        if m:
            out.by_step[int(m[1])] = Path(entry.path)
        elif entry.name in (f"{name}.safetensors", f"{name}_LoRA.safetensors"):
            out.final = Path(entry.path)
    return out


def loss_points(run_dir: Path, *, most: int = 600) -> list[tuple[int, float]]:
    """(step, loss) from the run's loss_log.db, thinned to at most `most` points."""
    db = run_dir / "loss_log.db"
    if not db.is_file():
        return []
    deadline = time.monotonic() + MAX_LOSS_SECONDS
    try:
        # Read-only: the run folder is the trainer's. Without a -wal file the trainer has
        # closed the log and all of it is in the main file: `immutable` then reads it without
        # SQLite creating -wal/-shm files beside it, which plain read-only mode still does.
        wal = db.with_name(db.name + "-wal").exists()
        query = "mode=ro" if wal else "mode=ro&immutable=1"
        con = sqlite3.connect(f"{db.resolve().as_uri()}?{query}", uri=True, timeout=2)
        # Any query past the deadline is interrupted (an OperationalError, caught below).
        con.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
        try:
            keys = [
                r[0]
                for r in con.execute(
                    "SELECT key FROM metric_keys WHERE typeof(key) = 'text' ORDER BY key LIMIT 1000"
                )
            ]
            key = _loss_key(keys)
            if key is None:
                return []
            # Only numbers: a hostile log may hold text or blobs where numbers belong.
            rows = con.execute(
                "SELECT step, value_real FROM metrics WHERE key = ? "
                "AND typeof(step) = 'integer' AND typeof(value_real) IN ('real', 'integer') "
                "ORDER BY step LIMIT ?",
                (key, MAX_LOSS_ROWS),
            ).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return []
    points = [(int(s), float(v)) for s, v in rows if math.isfinite(v)]
    if len(points) <= most:
        return points
    stride = math.ceil(len(points) / most)
    # Each kept point is the mean of its stride: the curve's shape without its noise.
    return [
        (points[i][0], sum(v for _, v in points[i : i + stride]) / len(points[i : i + stride]))
        for i in range(0, len(points), stride)
    ]


def read_progress(log_text: str, *, total: int | None = None) -> LogProgress | None:
    """The training bar's last state in the trainer's output, or None before training starts.

    Other bars (caching latents, generating samples, each sample's denoising steps) look the
    same; with `total` (the run's steps) only the training bar counts.
    """
    # tqdm redraws with carriage returns; the newest redraw is the last match.
    last = None
    for m in PROGRESS.finditer(log_text):
        if total is None or int(m["total"]) == total:
            last = m
    if last is None:
        return None
    step, total = int(last["step"]), int(last["total"])
    rate: float | None = None
    if last["rate"] != "?":
        value = float(last["rate"])
        rate = value if last["unit"] == "it/s" else (1 / value if value else None)
    eta = _clock(last["left"])
    if eta is None and rate:
        eta = (total - step) / rate
    tail = log_text[last.start() : last.start() + 400]
    lm = LOSS.search(tail.splitlines()[0] if tail else "")
    loss = float(lm["loss"]) if lm else None
    return LogProgress(step=step, total=total, rate=rate, eta_s=eta, loss=loss)


def why_it_died(log_text: str, *, smaller_profile: str | None) -> str:
    """One sentence from the trainer's output saying why the run ended badly."""
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", log_text[-60000:]) if ln.strip()]
    joined = "\n".join(lines)
    if re.search(r"out of memory|OutOfMemoryError", joined, re.IGNORECASE):
        advice = (
            f"pick the {smaller_profile} profile (it uses less GPU memory) and train again."
            if smaller_profile
            else "this is already the smallest profile: lower the resolution or free the GPU."
        )
        return f"The GPU ran out of memory: {advice}"
    if "No such file or directory" in joined and "run.py" in joined:
        return "The trainer could not start: run.py was not found in the checkout."
    if m := re.search(r"ModuleNotFoundError: No module named '([^']+)'", joined):
        return (
            f"The trainer's Python lacks the module {m[1]!r}: install AI-Toolkit's "
            "requirements into its venv."
        )
    for ln in reversed(lines):
        if ln.startswith("Error running job:"):
            return f"The trainer stopped with an error: {ln.removeprefix('Error running job:')}"
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", ln):
            return f"The trainer stopped with an error: {ln[:300]}"
    if lines:
        return f"The trainer ended before finishing; its last words: {lines[-1][:300]}"
    return "The trainer ended before finishing and wrote nothing to its log."


def _loss_key(keys: list[str]) -> str | None:
    for preferred in ("loss/loss", "loss"):
        if preferred in keys:
            return preferred
    return next((k for k in keys if k.startswith("loss")), None)


def _scan(folder: Path) -> Any:
    import os

    with os.scandir(folder) as it:
        yield from it


def _clock(text: str) -> float | None:
    if "?" in text:
        return None
    parts = [int(p) for p in text.split(":")]
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + p
    return float(seconds)


def _read_bounded(path: Path) -> str | None:
    """The file's text if it is a regular file of at most MAX_CONFIG_BYTES, else None."""
    try:
        if not path.is_file():
            return None
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError:
        return None
    return data.decode(errors="replace") if len(data) <= MAX_CONFIG_BYTES else None


def _yaml_load(text: str) -> Any:
    """The YAML document, or None when it is not YAML or passes the bounds: its events counted,
    then composed and its size counted with every alias expanded, and only then built into
    Python objects."""
    if len(text) > MAX_CONFIG_BYTES:
        return None
    try:
        for n, _ in enumerate(YAML(typ="safe", pure=True).parse(text)):
            if n > MAX_CONFIG_EVENTS:
                return None
        node = YAML(typ="safe", pure=True).compose(text)
        if node is None or not _node_within(node):
            return None
        return YAML(typ="safe", pure=True).load(text)
    except (YAMLError, RecursionError, ValueError, OverflowError):
        return None


def _node_within(root: Node) -> bool:
    """True when the node graph, aliases expanded, stays within MAX_CONFIG_NODES nodes and
    MAX_CONFIG_DEPTH levels and holds no cycle (walked without recursion)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Node, int, bool]] = [(root, 0, False)]
    while stack:
        node, depth, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            if isinstance(node.value, str):
                sizes[key] += len(node.value) // 1024  # long strings count as several nodes
            if sizes[key] > MAX_CONFIG_NODES:
                return False
            continue
        if key in sizes:
            continue
        if key in open_nodes or depth > MAX_CONFIG_DEPTH:
            return False  # a node inside itself (a recursive alias), or nesting too deep
        open_nodes.add(key)
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in _children(node) if id(c) not in sizes)
    return True


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _depth_within(value: Any, most: int) -> bool:
    """True when lists and dicts nest at most `most` deep (walked without recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > most:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any, default: int | None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return default


def _float(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default
