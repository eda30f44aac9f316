"""Near-duplicate detection by perceptual hash (Hamming distance on imagehash's 64-bit pHash)."""

from __future__ import annotations

import numpy as np


def phash_array(hexes: list[str]) -> np.ndarray:
    return np.array([int(h, 16) for h in hexes], dtype=np.uint64)


def close_pairs(
    new: list[tuple[int, str]], existing: list[tuple[int, str]], *, max_distance: int
) -> list[tuple[int, int, int]]:
    """(older_id, newer_id, distance) for each new image close to an existing or earlier new one.

    `new` and `existing` are (image_id, phash hex) lists; new ids are compared in order, so
    each pair is reported once.
    """
    ids = np.array([i for i, _ in existing] + [i for i, _ in new], dtype=np.int64)
    hashes = phash_array([h for _, h in existing] + [h for _, h in new])
    pairs: list[tuple[int, int, int]] = []
    start = len(existing)
    for k in range(start, len(ids)):
        if k == 0:
            continue
        dist = np.bitwise_count(hashes[:k] ^ hashes[k])
        for j in np.nonzero(dist <= max_distance)[0]:
            pairs.append((int(ids[j]), int(ids[k]), int(dist[j])))
    return pairs
