"""What becomes of an image's transparent pixels on the way to the trainer, in one place: the
export flattens them onto BACKGROUND unless transparency is kept as a loss mask. Import, lint
and the export itself say it with these words."""

from __future__ import annotations

BACKGROUND = (255, 255, 255)  # alpha is flattened on white unless kept
BACKGROUND_NAME = "white (#FFFFFF)"


def transparency_effect(share: float) -> str:
    """What the trainer sees where an image is transparent, as the export writes it."""
    amount = "under 1%" if share < 0.005 else f"{share:.0%}"
    return (
        f"{amount} of its pixels are transparent or partly so: the export flattens them onto "
        f"{BACKGROUND_NAME}, so the trainer learns that colour there (a half-clear pixel half "
        "white); exported with 'keep transparency as a loss mask' (--keep-alpha), the trainer "
        "does not train on them instead"
    )
