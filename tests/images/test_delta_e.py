"""CIEDE2000 in NumPy, every pair at once, against coloraide's one pair at a time."""

import numpy as np
from coloraide import Color

from app.images.delta_e import pairwise_2000


def test_every_pair_matches_coloraide() -> None:
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (120, 3)).tolist()
    # Greys (no hue), the ends of the range, and reds on both sides of hue 0 (the wrap).
    rgb += [[0, 0, 0], [255, 255, 255], [128, 128, 128], [12, 10, 10], [255, 0, 0]]
    rgb += [[255, 0, 12], [250, 6, 0], [0, 0, 255], [12, 0, 255], [200, 180, 40]]
    colours = [Color("srgb", [r / 255, g / 255, b / 255]).convert("lab-d65") for r, g, b in rgb]
    matrix = pairwise_2000(np.array([c.coords() for c in colours]))
    assert matrix.shape == (len(colours), len(colours))
    for i, a in enumerate(colours):
        for j, b in enumerate(colours):
            assert abs(matrix[i, j] - a.delta_e(b, method="2000")) < 1e-9, (rgb[i], rgb[j])
    assert np.all(np.diag(matrix) == 0)


def test_no_colours_give_an_empty_matrix() -> None:
    assert pairwise_2000(np.empty((0, 3))).shape == (0, 0)
