"""A batch of drafting requests as the model reads it: what Qwen-VL's processor gives, faster.

The processor writes each image's placeholder out as one token per merged patch (1,296 for
a 1024x1024 image), tokenizes that text, then turns Python lists into tensors: at batch 256
on an H200's host that was 1.3 of the 2.2 s a batch took to prepare, on the GPU's critical
path for a job's first batch. Here each request's text is tokenized once with its single
placeholder (texts repeat: the prompt differs only by the image's size) and the placeholder
is repeated in the ids, which is the same sequence (the placeholder is a special token, so
the text around it is tokenized alike), padded on the left in NumPy. The images go through
the processor's own image processor, on the GPU where it can. The result has the
processor's keys, values and dtypes (tests/drafting/test_model_inputs.py compares them).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from app.engines.interface import DraftError

_IMAGE, _VIDEO = 1, 2  # mm_token_type_ids' values (transformers' create_mm_token_type_ids)
CONVERT_THREADS = 8  # images turned into tensors at once


class ModelInputs:
    """Builds batches for one processor; remembers each text's token ids."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_token = processor.image_token
        self.image_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token = getattr(processor, "video_token", "<|video_pad|>")
        self.video_id = self.tokenizer.convert_tokens_to_ids(self.video_token)
        self.merge = processor.image_processor.merge_size**2
        self.pad_id = self.tokenizer.pad_token_id
        self.types = "mm_token_type_ids" in processor.model_input_names
        self._ids: dict[str, np.ndarray] = {}
        self._pool: ThreadPoolExecutor | None = None

    def batch(self, texts: list[str], images: list[Any], **image_kw: Any) -> Any:
        """The processor's batch (a BatchFeature) for these texts, one image placeholder
        each, and images, padded on the left, as tensors (the images' on the device
        `image_kw` names)."""
        return self.assemble(texts, [self.pixels(images, **image_kw)], list(range(len(texts))))

    def pixels(self, images: list[Any], **image_kw: Any) -> Any:
        """The image processor's output for these images: their patches, one after the
        other, and each one's grid."""
        return self.processor.image_processor(
            images=self._as_tensors(images), return_tensors="pt", **image_kw
        )

    def assemble(self, texts: list[str], parts: list[Any], order: list[int]) -> Any:
        """The batch for `texts` from images processed in `parts` (`pixels`, each of several
        images, in the order they came): the image at `order[n]` of that order is the n-th
        text's. Its patches are those the images processed together would have."""
        import torch
        from transformers import BatchFeature

        if len(parts) == 1 and order == list(range(len(order))):
            pixels = parts[0]
        else:
            pieces = []  # each image's patches and grid, in the order they came
            for part in parts:
                if set(part.keys()) != {"pixel_values", "image_grid_thw"}:
                    raise ValueError(f"images processed in parts give {sorted(part.keys())}")
                at = 0
                for grid in part["image_grid_thw"]:
                    count = int(grid.prod())
                    pieces.append((part["pixel_values"][at : at + count], grid))
                    at += count
            pixels = {
                "pixel_values": torch.cat([pieces[i][0] for i in order]),
                "image_grid_thw": torch.stack([pieces[i][1] for i in order]),
            }
        grids = pixels["image_grid_thw"].tolist()
        rows = [
            self._expanded(text, (t * h * w) // self.merge)
            for text, (t, h, w) in zip(texts, grids, strict=True)
        ]
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.pad_id, np.int64)
        mask = np.zeros((len(rows), width), np.int64)
        for n, row in enumerate(rows):
            ids[n, width - len(row) :] = row
            mask[n, width - len(row) :] = 1
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if self.types:
            types = np.zeros_like(ids)
            types[ids == self.image_id] = _IMAGE
            types[ids == self.video_id] = _VIDEO
            batch["mm_token_type_ids"] = torch.from_numpy(types)
        return BatchFeature({**batch, **pixels})

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _as_tensors(self, images: list[Any]) -> list[Any]:
        """RGB images as the channels-first uint8 tensors the image processor makes of
        them first, made on several threads (Pillow copies its pixels out without the GIL:
        one at a time, 0.44 s for 256 images of 1024 px on an H200's host); any other
        image list as it is (the processor composites transparency onto white)."""
        from PIL import Image

        if len(images) < 2 or not all(
            isinstance(i, Image.Image) and i.mode == "RGB" for i in images
        ):
            return images
        from torchvision.transforms.functional import pil_to_tensor  # the processor's own

        if self._pool is None:
            self._pool = ThreadPoolExecutor(CONVERT_THREADS, thread_name_prefix="atelier-pixels")
        return list(self._pool.map(pil_to_tensor, images))

    def _expanded(self, text: str, tokens: int) -> np.ndarray:
        """The text's ids, its one image placeholder repeated `tokens` times."""
        ids = self._ids.get(text)
        if ids is None:
            ids = np.asarray(self.tokenizer(text)["input_ids"], np.int64)
            if int((ids == self.image_id).sum()) != 1 or (ids == self.video_id).any():
                # The prompt's own text (a dataset's instructions) holds a placeholder: the
                # processor refuses it too, and the model would fail on it.
                raise DraftError(
                    f"A drafting prompt may hold no {self.image_token} or {self.video_token} "
                    "of its own (the model reads them as an image or a video): remove it "
                    "from the dataset's drafting instructions."
                )
            if len(self._ids) > 4096:  # prompts differ by the image's size: a few in a job
                self._ids.clear()
            self._ids[text] = ids
        at = int(np.flatnonzero(ids == self.image_id)[0])
        return np.concatenate((ids[:at], np.full(tokens, self.image_id, np.int64), ids[at + 1 :]))
