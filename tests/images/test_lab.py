"""8-bit sRGB to CIELAB in NumPy against coloraide's own conversion, one colour a call."""

import numpy as np
from coloraide import Color

from app.images.lab import lab_of


def test_every_colour_converts_as_coloraide_does() -> None:
    # Every level of each channel alone (both sides of the transfer function's linear toe),
    # the greys, and random colours.
    levels = np.arange(256)
    zeros = np.zeros(256, dtype=int)
    rgb = np.concatenate(
        [
            np.stack((levels, zeros, zeros), 1),
            np.stack((zeros, levels, zeros), 1),
            np.stack((zeros, zeros, levels), 1),
            np.stack((levels, levels, levels), 1),
            np.random.default_rng(3).integers(0, 256, (2000, 3)),
        ]
    )
    want = np.array(
        [Color("srgb", [r / 255, g / 255, b / 255]).convert("lab-d65").coords() for r, g, b in rgb]
    )
    got = lab_of(rgb)
    assert got.shape == (len(rgb), 3)
    assert np.abs(got - want).max() < 1e-9


def test_no_colours_give_no_rows() -> None:
    assert lab_of(np.empty((0, 3), dtype=int)).shape == (0, 3)
