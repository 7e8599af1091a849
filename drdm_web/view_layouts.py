"""The page's view layouts: a thick-slice stack's acquisition plane large, a 3D volume in the usual four views.

The choice of the plane is the logic's (:func:`DRDMSlicerLib.view_layout.show_volume_planes`); this module only
arranges trame-slicer's views: the acquisition view takes three quarters of the width, the two other planes and
the 3D view share a narrow column beside it.
"""

from __future__ import annotations

from trame_slicer.core import LayoutManager
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

QUAD_VIEW = "Quad View"  # trame-slicer's default grid: three planes and 3D
PRIMARY_FLEX = ["3", "1"]  # widths of the large view and of the column of the small ones


def primary_layout_id(view: str) -> str:
    """Layout id of ``view`` (Red/Yellow/Green) as the large view."""
    return f"DRDM {view} primary"


def _slice_views() -> dict[str, ViewLayoutDefinition]:
    return {"Red": ViewLayoutDefinition.axial_view(), "Yellow": ViewLayoutDefinition.sagittal_view(),
            "Green": ViewLayoutDefinition.coronal_view()}


def register_view_layouts(manager: LayoutManager) -> None:
    """Add one "large acquisition plane" layout per slice view to ``manager``."""
    views = _slice_views()
    threed = ViewLayoutDefinition.threed_view()
    for name, main in views.items():
        small = [view for other, view in views.items() if other != name] + [threed]
        manager.register_layout(primary_layout_id(name), Layout(
            LayoutDirection.Horizontal, [main, Layout(LayoutDirection.Vertical, small)], flex_sizes=PRIMARY_FLEX),
            lazy_initialization=True)


def view_layout_for(acquisition_view: str | None) -> str:
    """The layout id for a volume: its acquisition view large (a thick-slice stack), else the quad view."""
    return primary_layout_id(acquisition_view) if acquisition_view else QUAD_VIEW
