"""The Slicer module's model list (DRDMSlicerLib.model_list) on the real registry: no hard-coded names."""

from __future__ import annotations

import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "DRDMSlicer"))
from drdm.model_store.choice import DOWNLOAD_SUFFIX  # noqa: E402
from drdm.model_store.loading import load_model_spec  # noqa: E402
from drdm.model_store.offered import offered_models  # noqa: E402
from DRDMSlicerLib.model_list import model_items  # noqa: E402

pytestmark = pytest.mark.usefixtures("empty_cache")  # conftest: no downloaded model


def test_an_empty_cache_gives_auto_the_bundled_model_the_download_and_the_random_fields():
    items = model_items()
    assert items == ["auto", "cmr-2d", "lct-3d" + DOWNLOAD_SUFFIX, "random-field-2d", "random-field-3d"]
    assert items[1:] == [c.name + (DOWNLOAD_SUFFIX if c.download else "") for c in offered_models()]
    for name in (item for item in items[1:] if not item.endswith(DOWNLOAD_SUFFIX)):
        assert load_model_spec(name).name == name  # every other item is a name the engine loads as it is


def test_the_users_models_are_listed_and_a_model_that_recovers_nothing_is_not(tmp_path):
    from drdm.model_store.download import cache_folder
    from drdm.model_store.files import save_model
    from drdm.models import untrained_model

    model = untrained_model(2, size=32)
    save_model(model, cache_folder() / "mine", recovery_error={"summary": 0.5})
    save_model(model, cache_folder() / "noise", recovery_error={"summary": 1.2})
    items = model_items()
    assert "mine" in items and "noise" not in items and items[:2] == ["auto", "cmr-2d"]
