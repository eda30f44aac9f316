"""CIEDE2000 colour differences between every pair of many colours at once, in NumPy.

coloraide (which converts the colours, and which the tests hold this to) computes one pair per
call in Python: a palette's merge compared about a thousand pairs an image that way, 40 % of
its time, holding the GIL the threads of a drafting job share. The formula is Sharma, Wu and
Dalal's (2005), with kL = kC = kH = 1, as coloraide's `delta_e(method="2000")`.
"""

from __future__ import annotations

import numpy as np

_25_7 = 25.0**7


def pairwise_2000(lab: np.ndarray) -> np.ndarray:
    """The n x n matrix of CIEDE2000 differences between the rows of `lab` (n x 3: L, a, b)."""
    lab = np.asarray(lab, dtype=np.float64).reshape(-1, 3)
    lightness, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    chroma = np.hypot(a, b)
    # Pairs along the two axes: 1 is the row colour, 2 the column colour.
    c_mean = (chroma[:, None] + chroma[None, :]) / 2
    g = 0.5 * (1 - np.sqrt(c_mean**7 / (c_mean**7 + _25_7)))
    a1, a2 = (1 + g) * a[:, None], (1 + g) * a[None, :]
    b1, b2 = np.broadcast_to(b[:, None], g.shape), np.broadcast_to(b[None, :], g.shape)
    c1, c2 = np.hypot(a1, b1), np.hypot(a2, b2)
    h1 = np.degrees(np.arctan2(b1, a1)) % 360
    h2 = np.degrees(np.arctan2(b2, a2)) % 360
    chromatic = (c1 * c2) != 0

    dl = lightness[None, :] - lightness[:, None]
    dc = c2 - c1
    dh = h2 - h1
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(chromatic, dh, 0.0)
    big_h = 2 * np.sqrt(c1 * c2) * np.sin(np.radians(dh) / 2)

    l_mean = (lightness[:, None] + lightness[None, :]) / 2
    c_mean2 = (c1 + c2) / 2
    h_sum = h1 + h2
    h_mean = np.where(
        np.abs(h1 - h2) <= 180,
        h_sum / 2,
        np.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2),
    )
    h_mean = np.where(chromatic, h_mean, h_sum)
    t = (
        1
        - 0.17 * np.cos(np.radians(h_mean - 30))
        + 0.24 * np.cos(np.radians(2 * h_mean))
        + 0.32 * np.cos(np.radians(3 * h_mean + 6))
        - 0.20 * np.cos(np.radians(4 * h_mean - 63))
    )
    d_theta = 30 * np.exp(-(((h_mean - 275) / 25) ** 2))
    r_c = 2 * np.sqrt(c_mean2**7 / (c_mean2**7 + _25_7))
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / np.sqrt(20 + (l_mean - 50) ** 2)
    s_c = 1 + 0.045 * c_mean2
    s_h = 1 + 0.015 * c_mean2 * t
    r_t = -np.sin(np.radians(2 * d_theta)) * r_c
    lt, ct, ht = dl / s_l, dc / s_c, big_h / s_h
    return np.sqrt(np.maximum(lt**2 + ct**2 + ht**2 + r_t * ct * ht, 0.0))
