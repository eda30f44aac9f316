"""The board: a run's samples as prompts by steps, the step-0 LoRA-off reference beside
each, read from the config the run was started with; cached thumbnails, paged."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from app.captions import boxes
from app.config import Settings
from app.errors import Invalid, NotFound
from app.export.writer import export_roots
from app.training import runs

ROWS_PER_PAGE = 6
STEPS_PER_PAGE = 8
THUMB_SIDE = 320
LIVE_WINDOW_S = 600  # a sample this recent means the run may still be going


@dataclass(frozen=True)
class PromptElement:
    desc: str
    text: str | None
    left: float  # percentages of the image, for drawing the box over the sample
    top: float
    width: float
    height: float


@dataclass(frozen=True)
class PromptView:
    summary: str
    background: str
    elements: list[PromptElement]
    raw: str


@dataclass
class Row:
    index: int
    seed: int | None
    multiplier: float | None
    reference: runs.Sample | None  # step 0: the model before training, the LoRA off
    cells: dict[int, runs.Sample] = field(default_factory=dict)


@dataclass
class Group:
    prompt: str
    view: PromptView
    rows: list[Row]


@dataclass
class Board:
    run_dir: Path
    config: runs.RunConfig | None
    steps: list[int]  # the steps shown on this page of columns
    all_steps: list[int]
    groups: list[Group]
    page: int
    pages: int
    step_page: int
    step_pages: int
    saved_steps: list[int]
    final_step: int | None
    loss: list[tuple[int, float]]
    sample_count: int
    live: bool


def open_run(settings: Settings, raw: str) -> Path:
    """The run folder a request names, or why it cannot be read."""
    if not raw or "\x00" in raw:
        raise Invalid("Give the full path of an AI-Toolkit run folder.")
    path = Path(raw.strip()).expanduser()
    if not path.is_absolute() or ".." in path.parts:
        raise Invalid(f"Give the run folder's full path: {raw!r} is not one.")
    roots = run_roots(settings)
    # Checked first, symlinks resolved: nothing is said of folders outside the roots.
    if roots is not None and not any(path.resolve().is_relative_to(r) for r in roots):
        raise Invalid(f"This Atelier reads runs only under {', '.join(map(str, roots))}.")
    is_dir = path.is_dir()
    looks_like_run = is_dir and any(
        (path / n).exists() for n in ("samples", "config.yaml", ".job_config.json")
    )
    if roots is not None and not looks_like_run:
        # One answer for both: a token holder learns nothing of what else lies there.
        raise NotFound(f"There is no AI-Toolkit run folder at {raw!r}.")
    if not is_dir:
        raise NotFound(f"There is no folder {raw!r}.")
    if not looks_like_run:
        raise Invalid(
            f"{raw!r} does not look like an AI-Toolkit run folder (no samples/ and no config)."
        )
    return path.resolve()


def run_roots(settings: Settings) -> list[Path] | None:
    """The folders runs may be read under (the export roots and the owner's checkout); None
    means anywhere on this machine."""
    roots = export_roots(settings)
    if roots is not None and settings.aitk_dir is not None:
        roots = [*roots, settings.aitk_dir.expanduser().resolve()]
    return roots


def parse_prompt(prompt: str, *, width: int, height: int) -> PromptView:
    """A structured (JSON) sample prompt as what to show beside the sample; text as it is."""
    try:
        data = json.loads(prompt)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return PromptView(summary=prompt, background="", elements=[], raw=prompt)
    comp = data.get("compositional_deconstruction")
    comp = comp if isinstance(comp, dict) else {}
    elements = []
    raw_elements = comp.get("elements")
    for e in raw_elements if isinstance(raw_elements, list) else []:
        if not isinstance(e, dict):
            continue
        box = _box(e.get("bbox"), width, height)
        if box is None:
            continue
        elements.append(
            PromptElement(
                desc=str(e.get("desc") or ""),
                text=str(e["text"]) if e.get("text") else None,
                left=round(box.x0 * 100, 2),
                top=round(box.y0 * 100, 2),
                width=round((box.x1 - box.x0) * 100, 2),
                height=round((box.y1 - box.y0) * 100, 2),
            )
        )
    return PromptView(
        summary=str(data.get("high_level_description") or ""),
        background=str(comp.get("background") or ""),
        elements=elements,
        raw=json.dumps(data, indent=2, ensure_ascii=False),
    )


def build_board(
    run_dir: Path,
    *,
    recorded_yaml: str | None = None,
    page: int = 1,
    step_page: int | None = None,
    live_job: bool | None = None,
) -> Board:
    """One page of the board: rows (prompt, seed, strength) by a window of steps."""
    config = runs.read_config(run_dir, recorded_yaml)
    samples = runs.list_samples(run_dir)
    by_index: dict[int, dict[int, runs.Sample]] = {}
    for s in samples:
        # A step sampled twice (a resumed run) shows its newest picture.
        by_index.setdefault(s.index, {})[s.step] = s
    specs = {s.index: s for s in config.samples} if config else {}
    indices = sorted(set(by_index) | set(specs))
    all_steps = sorted({s.step for s in samples if s.step != 0})
    step_pages = max(1, -(-len(all_steps) // STEPS_PER_PAGE))
    # The newest steps by default: while a run goes on, that is where new samples land.
    sp = step_pages if step_page is None else min(max(1, step_page), step_pages)
    # Windows counted from the newest step, so the default one is full.
    end = len(all_steps) - (step_pages - sp) * STEPS_PER_PAGE
    steps = all_steps[max(0, end - STEPS_PER_PAGE) : end]
    pages = max(1, -(-len(indices) // ROWS_PER_PAGE))
    page = min(max(1, page), pages)
    groups: dict[str, Group] = {}
    for i in indices[(page - 1) * ROWS_PER_PAGE : page * ROWS_PER_PAGE]:
        spec = specs.get(i)
        cells = by_index.get(i, {})
        prompt = spec.prompt if spec else f"sample {i} (not in the run's config)"
        if prompt not in groups:
            w, h = (spec.width, spec.height) if spec else (1, 1)
            groups[prompt] = Group(prompt, parse_prompt(prompt, width=w, height=h), [])
        groups[prompt].rows.append(
            Row(
                index=i,
                seed=spec.seed if spec else None,
                multiplier=spec.multiplier if spec else None,
                reference=cells.get(0),
                cells={st: cells[st] for st in steps if st in cells},
            )
        )
    saved = runs.checkpoints(run_dir, config.name) if config else runs.Checkpoints()
    newest = max((s.time_ms for s in samples), default=0) / 1000
    return Board(
        run_dir=run_dir,
        config=config,
        steps=steps,
        all_steps=all_steps,
        groups=list(groups.values()),
        page=page,
        pages=pages,
        step_page=sp,
        step_pages=step_pages,
        saved_steps=sorted(saved.by_step),
        final_step=config.steps if (config and saved.final) else None,
        loss=runs.loss_points(run_dir),
        sample_count=len(samples),
        # A job of ours knows; for a run from elsewhere, a recent sample says it may go on.
        live=live_job if live_job is not None else (time.time() - newest) < LIVE_WINDOW_S,
    )


def sample_path(settings: Settings, run_dir: Path, name: str) -> Path:
    """The sample file a request names, only ever a sample of this run; where the run roots
    apply, the file itself (a symlink, or in a symlinked samples/) must lie under them."""
    if runs.parse_sample_name(name) is None:
        raise NotFound(f"{name!r} is not a sample of this run.")
    path = run_dir / "samples" / name
    if not path.is_file():
        raise NotFound(f"The sample {name} is not there (any more).")
    roots = run_roots(settings)
    if roots is not None:
        path = path.resolve()
        if not any(path.is_relative_to(r) for r in roots):
            raise NotFound(f"The sample {name} is not there (any more).")
    return path


def thumbnail(settings: Settings, path: Path) -> Path:
    """A cached JPEG thumbnail of the sample, made once per file version; NotFound if unreadable."""
    st = path.stat()
    key = hashlib.sha1(f"{path}:{st.st_mtime_ns}:{st.st_size}".encode()).hexdigest()
    folder = settings.training_dir / "thumbs" / key[:2]
    thumb = folder / f"{key}.jpg"
    if thumb.is_file():
        return thumb
    bad = folder / f"{key}.unreadable"
    if bad.exists():
        raise NotFound(f"{path.name} cannot be read as an image.")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with PILImage.open(path) as img:
            img.draft("RGB", (THUMB_SIDE, THUMB_SIDE))  # JPEGs decode at a reduced scale
            small = img.convert("RGB")
            small.thumbnail((THUMB_SIDE, THUMB_SIDE))
            tmp = folder / f".{key}.tmp.jpg"
            small.save(tmp, "JPEG", quality=85)
            tmp.replace(thumb)
    except (OSError, ValueError, PILImage.DecompressionBombError):
        bad.touch()
        raise NotFound(f"{path.name} cannot be read as an image.") from None
    return thumb


def drop_unreadable(settings: Settings, board: Board) -> Board:
    """The board with samples that cannot be decoded left out (thumbnails made on the way)."""
    for group in board.groups:
        for row in group.rows:
            if row.reference is not None and not _readable(settings, board, row.reference):
                row.reference = None
            row.cells = {st: s for st, s in row.cells.items() if _readable(settings, board, s)}
    return board


def _readable(settings: Settings, board: Board, sample: runs.Sample) -> bool:
    try:
        thumbnail(settings, sample_path(settings, board.run_dir, sample.name))
        return True
    except (NotFound, OSError):
        return False


def _box(value: Any, width: int, height: int) -> boxes.Box | None:
    if not isinstance(value, list) or len(value) != 4:
        return None
    if not all(isinstance(v, int | float) for v in value):
        return None
    if any(v > 1000 for v in value):
        return boxes.from_pixels(value, width=width, height=height)
    return boxes.from_official(value)


@dataclass(frozen=True)
class LossChart:
    path: str  # SVG path data of the curve
    marks: list[tuple[float, int]]  # x of each saved step, and the step
    width: int
    height: int
    low: float
    high: float
    last_step: int


def loss_chart(
    points: list[tuple[int, float]], *, saved: list[int], total: int, width: int = 1000,
    height: int = 170,
) -> LossChart | None:  # fmt: skip
    """The loss curve as SVG path data over steps 0..total, saved steps marked; None if empty."""
    if not points:
        return None
    span = max(total, points[-1][0], 1)
    values = [v for _, v in points]
    low, high = min(values), max(values)
    pad = (high - low) * 0.05 or abs(high) * 0.05 or 1.0
    low, high = low - pad, high + pad

    def x(step: int) -> float:
        return round(step / span * width, 1)

    def y(v: float) -> float:
        return round(height - (v - low) / (high - low) * height, 1)

    path = " ".join(f"{'M' if i == 0 else 'L'}{x(s)},{y(v)}" for i, (s, v) in enumerate(points))
    marks = [(x(s), s) for s in saved if s <= span]
    return LossChart(path, marks, width, height, low, high, points[-1][0])
