"""The Slicer module's model list: ``auto``, then what the registry offers (:func:`drdm.model_store.offered.offered_models`)."""

from __future__ import annotations

from drdm.model_store.choice import AUTO, DOWNLOAD_SUFFIX
from drdm.model_store.offered import offered_models


def model_items() -> list[str]:
    """The model list's items: ``auto`` (decided from the volume), then the offered models, the default first (the
    bundled ``cmr-2d``, the user's models in the cache, ``lct-3d (download)`` until it is fetched, the random-field-only
    choices). An item without :data:`~drdm.model_store.choice.DOWNLOAD_SUFFIX` is a name the engine loads as it is."""
    offered = sorted(offered_models(), key=lambda choice: not choice.default)
    return [AUTO] + [choice.name + (DOWNLOAD_SUFFIX if choice.download else "") for choice in offered]
