"""8-bit sRGB colours to CIELAB (D65 white), many at once in NumPy.

The same conversion as coloraide's `Color("srgb", ...).convert("lab-d65")` (which the tests
hold this to), with coloraide's own matrix and white point: its one colour a call in Python
took 15 % of an element palette's time (bench/palettes.py), holding the GIL the palette
threads and processes of a drafting job share.
"""

from __future__ import annotations

import numpy as np
from coloraide.cat import WHITES
from coloraide.spaces.srgb_linear import RGB_TO_XYZ
from coloraide.util import xy_to_xyz

_TO_XYZ = np.array(RGB_TO_XYZ, dtype=np.float64)
_WHITE = np.array(xy_to_xyz(WHITES["2deg"]["D65"]), dtype=np.float64)
_EPSILON = 216 / 24389  # CIE's (6/29)^3
_KAPPA = 24389 / 27


def _linear(channel: np.ndarray) -> np.ndarray:
    """sRGB's transfer function undone, for values in 0..1."""
    return np.where(channel <= 0.04045, channel / 12.92, ((channel + 0.055) / 1.055) ** 2.4)


# Every 8-bit level's linear value, computed once.
_LINEAR = _linear(np.arange(256, dtype=np.float64) / 255)


def lab_of(rgb: np.ndarray) -> np.ndarray:
    """The n x 3 CIELAB (L, a, b) of n x 3 8-bit sRGB colours."""
    linear = _LINEAR[np.asarray(rgb, dtype=np.intp).reshape(-1, 3)]
    xyz = linear @ _TO_XYZ.T / _WHITE
    f = np.where(xyz > _EPSILON, np.cbrt(xyz), (_KAPPA * xyz + 16) / 116)
    return np.stack(
        (116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])), axis=1
    )
