"""GPU profiles: the guide's 24 GB config as the baseline, and for each card size only the
changes its memory allows, each with the reason the YAML comment and the export page share.

The amount of training stays the guide's, counted in images seen as the trainer counts them
(AI-Toolkit 27a03a91, read for this module):
- toolkit/config_modules.py `preprocess_dataset_raw_config`: a dataset with a list of
  resolutions becomes one dataset per resolution, so [512, 768, 1024] is three copies of
  every image, each its own item.
- toolkit/dataloader_mixins.py `BucketsMixin.setup_buckets` / `build_batch_indices`: each
  copy's images are grouped by bucket (the crop size), and every batch is cut from ONE
  bucket; a bucket's last, short batch is padded with repeats of its own images up to
  batch_size. The groups are built once, at the first epoch (setup_buckets returns early
  after it), and the DataLoader only shuffles their order.
- toolkit/data_loader.py `AiToolkitDataset.__len__` / `__getitem__` and
  `get_dataloader_from_datasets`: with buckets one item is one whole batch (batch_size=None
  in the DataLoader), so an epoch is the number of batches over all the copies.
- jobs/process/BaseSDTrainProcess.py `run` (the train loop): one step takes one batch
  (gradient_accumulation 1) and `steps` counts those; saves and samples fire on
  `step % save_every` and `step % sample_every`. So images seen = steps x batch_size,
  repeats and resolution copies included.
- extensions_built_in/sd_trainer/SDTrainer.py: the loss is the batch's mean, and
  toolkit/optimizer.py hands `lr` to AdamW8bit unscaled; the EMA (toolkit/ema.py) is
  updated once per optimizer step. Nothing in the trainer rescales lr or EMA for the batch.

Memory facts (the models' sizes; docs/export.md, the GPU profiles): the Ideogram 4
transformer is ~17 GB in bf16 and ~9 GB in fp8; with cache_text_embeddings the text
encoder is unloaded after caching.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from app.errors import Invalid
from app.images.buckets import bucket_size

PROFILES = ("12gb", "16gb", "24gb", "32gb", "48gb", "80gb", "96gb")
DEFAULT_PROFILE = "24gb"
TRANSFORMER_GB = {"bf16": 17.0, "fp8": 9.0}
TEXT_ENCODER_GB = {"bf16": 16.0, "fp8": 8.0}

# The guide's run (its section 5): 2,500 steps of one image, a save every 250, lr 1e-4,
# rank 16, EMA 0.99.
GUIDE_STEPS = 2500
GUIDE_SAVE_EVERY = 250
GUIDE_SAVES = GUIDE_STEPS // GUIDE_SAVE_EVERY
GUIDE_LR = 1e-4
GUIDE_RANK = 16
GUIDE_EMA_DECAY = 0.99

# The memory estimate, per part. The overhead (CUDA context, caches, fragmentation) is set so
# that the guide's 24 GB recipe comes out at the ~17 GB the guide measured on a 4090.
LORA_GB = 0.6  # rank 16 over the 34 blocks: ~65M parameters with gradients and 8-bit Adam
ACTIVATION_GB = 2.6  # one 1024 px image with gradient checkpointing
LOW_VRAM_SHARE = 0.8
OVERHEAD_GB = 5.3
# A batch grows only while the estimate stays under this share of the card, and never past
# MAX_BATCH: above it a run is under 320 steps and the square-root rule (see _lr) is
# stretched beyond the small batch multiples it was shown for.
HEADROOM = 0.9
MAX_BATCH = 8
# A batch is only as large as the buckets fill: repeats of one image add its weight, not
# new images, so at most this share of an epoch's batch places may be repeats.
MAX_REPEATS = 0.25


@dataclass(frozen=True)
class Profile:
    name: str
    gpu_gb: int
    quantize: bool = True
    quantize_te: bool = True
    low_vram: bool = True
    offload: float = 0.0  # share of transformer layers kept in CPU memory
    grows_batch: bool = False  # the card is big enough to take a batch above one
    multires: bool = False
    max_resolution: int | None = None
    sample_seconds: int = 30  # a rough figure for one 768 px sample on this class of card
    why: dict[str, str] = field(default_factory=dict)

    def resolutions(self, resolution: int) -> list[int]:
        """The training resolutions this profile writes for a dataset trained at `resolution`."""
        res = self.top_resolution(resolution)
        return [r for r in (512, 768, 1024) if r <= res] if self.multires else [res]

    def top_resolution(self, resolution: int) -> int:
        return min(resolution, self.max_resolution or resolution)

    def vram_estimate_gb(self, resolution: int, batch: int = 1) -> float:
        """A rough training peak: weights on the GPU, LoRA and optimizer, activations, overhead."""
        weights = TRANSFORMER_GB["fp8" if self.quantize else "bf16"] * (1 - self.offload)
        scale = (self.top_resolution(resolution) / 1024) ** 2
        share = LOW_VRAM_SHARE if self.low_vram else 1.0
        return round(weights + LORA_GB + ACTIVATION_GB * batch * scale * share + OVERHEAD_GB, 1)

    def caching_gb(self) -> float:
        """The caching pass without low_vram: the transformer and the text encoder together,
        before the encoder is unloaded (with low_vram the guide measured ~17 GB in all)."""
        if self.low_vram:
            return 0.0
        weights = TRANSFORMER_GB["fp8" if self.quantize else "bf16"] * (1 - self.offload)
        return round(
            weights + TEXT_ENCODER_GB["fp8" if self.quantize_te else "bf16"] + OVERHEAD_GB, 1
        )

    def peak_gb(self, resolution: int, batch: int = 1) -> float:
        """The larger of the training estimate and the caching pass."""
        return max(self.vram_estimate_gb(resolution, batch), self.caching_gb())

    def memory_batch(self, resolution: int) -> int:
        """The largest batch the estimate fits in the card (1 for the guide's own sizes)."""
        if not self.grows_batch:
            return 1
        fits = [
            b
            for b in range(1, MAX_BATCH + 1)
            if self.vram_estimate_gb(resolution, b) <= HEADROOM * self.gpu_gb
        ]
        return max(fits, default=1)


_MULTIRES = (
    "the guide's own alternative (512/768/1024 'also work well and improve robustness to "
    "crop/scale'); the trainer copies every image once per size, and the copies share the "
    "run's images seen"
)
_PROFILES = {
    "12gb": Profile(
        "12gb",
        12,
        offload=0.6,
        max_resolution=768,
        sample_seconds=90,
        why={
            "layer_offloading": "12 GB cannot hold the 9 GB fp8 transformer and its "
            "activations: 60% of its layers wait in CPU memory (slower, but it fits)",
            "resolution": "768 px at most: 1024 px activations do not fit beside the weights",
        },
    ),
    "16gb": Profile(
        "16gb",
        16,
        offload=0.3,
        sample_seconds=60,
        why={
            "layer_offloading": "16 GB is tight for 1024 px: 30% of the transformer's "
            "layers wait in CPU memory"
        },
    ),
    "24gb": Profile("24gb", 24),
    "32gb": Profile(
        "32gb",
        32,
        low_vram=False,
        sample_seconds=20,
        why={
            "low_vram": "32 GB holds the fp8 transformer and 1024 px activations at once; "
            "low_vram only slows the run"
        },
    ),
    "48gb": Profile(
        "48gb",
        48,
        quantize=False,
        low_vram=False,
        grows_batch=True,
        multires=True,
        sample_seconds=20,
        why={
            "quantize": "the bf16 transformer (~17 GB) fits: no fp8 rounding of the weights",
            "low_vram": "not needed with 48 GB",
            "resolution": _MULTIRES,
        },
    ),
    "80gb": Profile(
        "80gb",
        80,
        quantize=False,
        low_vram=False,
        grows_batch=True,
        multires=True,
        sample_seconds=10,
        why={
            "quantize": "remove quantization first (AI-Toolkit's advice for 80 GB cards): "
            "the bf16 transformer (~17 GB) fits",
            "low_vram": "not needed with 80 GB",
            "resolution": _MULTIRES,
        },
    ),
    "96gb": Profile(
        "96gb",
        96,
        quantize=False,
        quantize_te=False,
        low_vram=False,
        grows_batch=True,
        multires=True,
        sample_seconds=12,
        why={
            "quantize": "the bf16 transformer (~17 GB) fits: no fp8 rounding of the weights",
            "quantize_te": "the text encoder in bf16 (~16 GB) for the caching pass, beside "
            "the bf16 transformer (about 38 GB then): exact embeddings, unloaded before "
            "training",
            "low_vram": "not needed with 96 GB (RTX PRO 6000 Blackwell)",
            "resolution": _MULTIRES,
        },
    ),
}


def get_profile(name: str) -> Profile:
    if name not in _PROFILES:
        raise Invalid(f"There is no GPU profile {name!r}: use one of {', '.join(PROFILES)}.")
    return _PROFILES[name]


def profile_for_gpu(total_gb: float) -> str:
    """The largest profile that fits a card of `total_gb`."""
    fitting = [p for p in PROFILES if _PROFILES[p].gpu_gb <= total_gb + 1]
    return fitting[-1] if fitting else PROFILES[0]


@dataclass(frozen=True)
class Change:
    """One value of the guide's config a profile changes, and why (YAML comment and page)."""

    path: tuple[str, ...]  # e.g. ("train", "lr"); the first part names the process section
    guide: Any
    value: Any
    why: str

    @property
    def key(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Plan:
    """A profile applied to one dataset: what the run does and how much it trains."""

    profile: Profile
    resolutions: list[int]
    buckets: list[int]  # images in each bucket, over all the resolution copies
    memory_batch: int
    batch: int
    save_every: int
    steps: int
    lr: float
    ema_decay: float
    memory_gb: float
    changes: list[Change]
    kept: list[Change]  # values the profile could be expected to change, kept, and why

    @property
    def images_seen(self) -> int:
        return self.steps * self.batch

    @property
    def saves(self) -> int:
        return self.steps // self.save_every

    @property
    def batches_per_epoch(self) -> int:
        return sum(math.ceil(n / self.batch) for n in self.buckets)

    @property
    def epochs(self) -> float:
        return self.steps / self.batches_per_epoch if self.buckets else 0.0

    def change(self, *path: str) -> Change | None:
        return next((c for c in self.changes + self.kept if c.path == path), None)


def bucket_counts(sizes: Iterable[tuple[int, int]], resolutions: list[int]) -> list[int]:
    """Images per bucket as the trainer groups them, one group of buckets per resolution."""
    counts: list[int] = []
    sizes = list(sizes)
    for r in resolutions:
        counts.extend(Counter(bucket_size(w, h, resolution=r) for w, h in sizes).values())
    return sorted(counts, reverse=True)


def repeat_share(buckets: list[int], batch: int) -> float:
    """The share of an epoch's batch places the trainer fills with repeats."""
    places = sum(math.ceil(n / batch) * batch for n in buckets)
    return 1 - sum(buckets) / places if places else 0.0


def fillable_batch(buckets: list[int], *, most: int) -> int:
    """The largest batch up to `most` whose repeats stay within MAX_REPEATS of an epoch."""
    if not buckets:  # no images yet: nothing to fill a batch with
        return 1
    fits = [b for b in range(1, most + 1) if repeat_share(buckets, b) <= MAX_REPEATS]
    return max(fits, default=1)


def short_buckets(buckets: list[int], batch: int) -> int:
    """How many buckets hold fewer images than `batch` (their batch is filled by repeats)."""
    return sum(n < batch for n in buckets)


def _lr(batch: int) -> float:
    # AdamW moves each weight by about lr a step whatever the batch (the gradient is divided by
    # its own running size), so at steps / batch the LoRA would travel a batch-th as far. The
    # square-root scaling rule for adaptive optimisers (Malladi et al., NeurIPS 2022) keeps the
    # training dynamics of the smaller batch: lr x sqrt(batch) over steps / batch.
    return float(f"{GUIDE_LR * math.sqrt(batch):.3g}")


def plan(*, profile: str, resolution: int, sizes: Iterable[tuple[int, int]]) -> Plan:
    """The profile's run for a dataset of images of these (width, height) sizes."""
    p = get_profile(profile)
    resolutions = p.resolutions(resolution)
    buckets = bucket_counts(sizes, resolutions)
    memory_batch = p.memory_batch(resolution)
    batch = fillable_batch(buckets, most=memory_batch)
    save_every = max(1, round(GUIDE_SAVE_EVERY / batch))
    steps = GUIDE_SAVES * save_every
    lr = _lr(batch)
    # The EMA averages over about 1 / (1 - decay) steps: the same number of images is
    # decay ** batch (the same rule scales Adam's own averages).
    ema_decay = round(GUIDE_EMA_DECAY**batch, 4)
    changes = _memory_changes(p, resolutions)
    res_text = "/".join(map(str, resolutions))
    if batch > 1:
        why = (
            f"{batch} images a step (training at about {p.vram_estimate_gb(resolution, batch)} "
            "GB): the "
            "trainer cuts each batch from one bucket and repeats its images when it holds "
            f"fewer; at {batch}, {repeat_share(buckets, batch):.0%} of an epoch's places over "
            f"the {len(buckets)} buckets at {res_text} px are repeats"
        )
        if batch < memory_batch:
            why += (
                f"; the memory would take {memory_batch}, with "
                f"{repeat_share(buckets, memory_batch):.0%} repeats"
            )
        changes += [
            Change(("train", "batch_size"), 1, batch, why),
            Change(
                ("train", "steps"),
                GUIDE_STEPS,
                steps,
                f"{steps} x {batch} = {steps * batch} images seen, the guide's "
                f"{GUIDE_STEPS} x 1: more would overtrain (the guide: burnt text and layout)",
            ),
            Change(
                ("save", "save_every"),
                GUIDE_SAVE_EVERY,
                save_every,
                f"a save every {save_every * batch} images seen, as the guide's every "
                f"{GUIDE_SAVE_EVERY}: the same {GUIDE_SAVES} checkpoints to pick from",
            ),
            Change(
                ("sample", "sample_every"),
                GUIDE_SAVE_EVERY,
                save_every,
                "samples at every save, as in the guide",
            ),
            Change(
                ("train", "lr"),
                GUIDE_LR,
                lr,
                f"{GUIDE_LR:g} x sqrt({batch}): AdamW steps by about lr whatever the batch, so "
                f"{steps} steps at the guide's lr would learn a fraction of what its "
                f"{GUIDE_STEPS} do; the square-root rule for Adam keeps the run's dynamics",
            ),
            Change(
                ("train", "ema_config", "ema_decay"),
                GUIDE_EMA_DECAY,
                ema_decay,
                f"{GUIDE_EMA_DECAY} ** {batch}: the EMA, updated once a step, still averages "
                "over the guide's ~100 images",
            ),
        ]
    kept = [
        Change(
            ("network", "linear"),
            GUIDE_RANK,
            GUIDE_RANK,
            "rank 16 as the guide: it is a choice of style complexity, not of memory "
            "(rank 32 costs ~0.6 GB more on any card), and with alpha equal to the rank a "
            "larger rank also takes larger steps at the same lr, more training than the "
            "guide chose; raise it to 32 for a complex style, as the guide says",
        )
    ]
    return Plan(
        profile=p,
        resolutions=resolutions,
        buckets=buckets,
        memory_batch=memory_batch,
        batch=batch,
        save_every=save_every,
        steps=steps,
        lr=lr if batch > 1 else GUIDE_LR,
        ema_decay=ema_decay if batch > 1 else GUIDE_EMA_DECAY,
        memory_gb=p.peak_gb(resolution, batch),
        changes=changes,
        kept=kept,
    )


def with_steps(run: Plan, steps: int) -> Plan:
    """The plan with a step count the user chose instead of the guide's images seen."""
    why = (
        f"{steps} steps x batch {run.batch} = {steps * run.batch} images seen, as asked "
        f"(the guide: {GUIDE_STEPS})"
    )
    changes = [c for c in run.changes if c.path != ("train", "steps")]
    changes.append(Change(("train", "steps"), GUIDE_STEPS, steps, why))
    return dataclasses.replace(run, steps=steps, changes=changes)


def _memory_changes(p: Profile, resolutions: list[int]) -> list[Change]:
    """The changes a card's memory makes to the guide's model and resolution settings."""
    out = []
    if not p.quantize:
        out.append(Change(("model", "quantize"), True, False, p.why["quantize"]))
    if not p.quantize_te:
        out.append(Change(("model", "quantize_te"), True, False, p.why["quantize_te"]))
    if not p.low_vram:
        out.append(Change(("model", "low_vram"), True, False, p.why["low_vram"]))
    if p.offload:
        out.append(Change(("model", "layer_offloading"), False, True, p.why["layer_offloading"]))
        out.append(
            Change(
                ("model", "layer_offloading_transformer_percent"),
                1,
                p.offload,
                f"{p.offload:.0%} of the transformer's layers in CPU memory",
            )
        )
    if resolutions != [1024] and "resolution" in p.why:
        out.append(Change(("datasets", "resolution"), [1024], resolutions, p.why["resolution"]))
    return out
