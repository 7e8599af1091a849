"""The page of ``drdm web``: a side panel (stable HTML ids, a public contract) beside Slicer's views.

Ids: drdm-volume-path, drdm-load, drdm-segmentation-path, drdm-model, drdm-level, drdm-seed, drdm-random-seed,
drdm-count, drdm-mode, drdm-speed, drdm-device, drdm-generate, drdm-cancel, drdm-progress, drdm-status,
drdm-results, drdm-jacobian-toggle, drdm-grid-toggle, drdm-stats, drdm-export-transform, drdm-export-all; also
drdm-volume-upload, drdm-segmentation-upload, drdm-original-toggle, drdm-jacobian-opacity, drdm-legend,
drdm-alert, drdm-jacobian-threshold, drdm-slices (shown for a 2D model on a 3D volume only), drdm-model-note,
drdm-magnitude (the size in mm), drdm-keep, drdm-only and drdm-margin (shown with a segmentation).
Served instead of the app: drdm-in-use (another browser holds the server) and
drdm-no-access (no access secret in the URL), see ``session``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drdm.settings import MAX_INTERACTIVE_COUNT
from trame.ui.vuetify3 import SinglePageWithDrawerLayout
from trame.widgets import html
from trame.widgets import vuetify3 as v
from trame_slicer.core import LayoutManager

LEGEND_CSS = ("background: linear-gradient(to right, rgb(26,77,255), rgb(255,255,255) 50%, rgb(255,51,26));"
              "height: 12px; border-radius: 2px;")
FIELD = dict(density="compact", hide_details="auto", variant="outlined", classes="mb-2")
SELECT_CSS = ("width: 100%; padding: 6px 8px; color: inherit; background: transparent; border-radius: 4px; "
              "border: 1px solid rgba(255,255,255,0.38);")


@dataclass(frozen=True)
class PageHandlers:
    """What the page needs from the app (handed in, so that the page never imports the app): the trame server
    whose state the widgets bind to, the manager of Slicer's views and the server-side handlers of the buttons."""

    server: Any  # trame_server.Server
    layout_manager: LayoutManager
    load_inputs: Callable[[], None]
    generate: Callable[[], None]
    cancel: Callable[[], None]
    download_transform: Callable[[], Any]  # the attachment the browser downloads
    download_all: Callable[[], Any]  # the attachment the browser downloads


def _download(handlers: PageHandlers, handler, suffix: str) -> str:
    """Client-side click code: run ``handler`` on the server, then save what it returns as a browser download."""
    trigger = handlers.server.controller.trigger_name(handler)
    return (f"trigger('{trigger}').then((content) => content && utils.download("
            f"drdm_selected_stem + '{suffix}', content, 'application/octet-stream'))")


def _checked_upload(variable: str) -> str:
    """Client-side click code for a file input: a file over ``--max-upload-mb`` is refused before it is sent (the
    server checks again); else it goes to ``variable`` (the server's upload handler)."""
    return (f"(f) => {{ const file = Array.isArray(f) ? f[0] : f; "
            f"if (file && file.size > drdm_max_upload_bytes) {{ "
            f"drdm_error = `${{file.name}}: ${{(file.size / 1048576).toFixed(1)}} MB is over the upload limit of "
            f"${{drdm_max_upload_mb}} MB (--max-upload-mb)`; drdm_status = `error: ${{drdm_error}}`; {variable} = null; }}"
            f" else {{ {variable} = f; }} }}")


def _inputs(handlers: PageHandlers) -> None:
    html.Div("Input", classes="text-subtitle-2 mb-1")
    v.VTextField(id="drdm-volume-path", label="Volume (path in the data folder)", v_model=("drdm_volume_path",),
                 hint=("`in the data folder ${drdm_data_dir}`",), persistent_hint=True, **FIELD)
    v.VTextField(id="drdm-segmentation-path", label="Segmentation / label map (optional)",
                 v_model=("drdm_segmentation_path",), **FIELD)
    with html.Div(classes="d-flex align-center mb-2"):
        v.VBtn("Load", id="drdm-load", click=handlers.load_inputs, color="primary", variant="tonal", size="small",
               disabled=("drdm_running",))
        html.Div("{{ drdm_loaded }}", classes="text-caption ml-2")
    v.VFileInput(id="drdm-volume-upload", label=("`…or upload a volume (at most ${drdm_max_upload_mb} MB)`",),
                 model_value=("drdm_upload",), update_modelValue=_checked_upload("drdm_upload"), **FIELD,
                 prepend_icon="mdi-upload", disabled=("drdm_running",))
    v.VFileInput(id="drdm-segmentation-upload", label="…and its label map", model_value=("drdm_segmentation_upload",),
                 update_modelValue=_checked_upload("drdm_segmentation_upload"), **FIELD, prepend_icon="mdi-upload",
                 disabled=("drdm_running || !drdm_loaded",))


def _slices() -> None:
    """The slices choice, a plain ``<select id="drdm-slices">`` (displayed, with its value, exactly when it applies:
    a 2D model on a 3D volume)."""
    with html.Div(v_show=("drdm_slices_visible",), classes="mb-2"):
        html.Div("Slices (a 2D model on a 3D volume)", classes="text-caption")
        with html.Select(id="drdm-slices", v_model=("drdm_slices",), style=SELECT_CSS,
                         title="coherent: one deformation, smooth through the slices; independent: each slice its own "
                               "(the authors' way, for slice-wise training data)"):
            html.Option("coherent: one deformation, smooth in 3D", value="coherent")
            html.Option("independent: each slice its own (the authors' way)", value="independent")


def _regions() -> None:
    """Segments kept still / alone deformed, and the margin (shown when a segmentation is loaded)."""
    with html.Div(v_show=("drdm_segment_items.length",), classes="mb-1"):
        v.VSelect(id="drdm-keep", label="Keep still (segments)", v_model=("drdm_keep",), items=("drdm_segment_items",),
                  item_title="title", item_value="value", multiple=True, chips=True, closable_chips=True, **FIELD)
        v.VSelect(id="drdm-only", label="Deform only (segments)", v_model=("drdm_only",), items=("drdm_segment_items",),
                  item_title="title", item_value="value", multiple=True, chips=True, closable_chips=True, **FIELD)
        v.VTextField(id="drdm-margin", label="Margin (mm)", v_model_number=("drdm_margin",), type="number",
                     raw_attrs=['min="0"'], hint="the smooth transition around kept / deformed-only segments",
                     persistent_hint=True, **FIELD)


def _settings(handlers: PageHandlers) -> None:
    html.Div("Deformation", classes="text-subtitle-2 mb-1")
    v.VSelect(id="drdm-model", label="Model", v_model=("drdm_model",), items=("drdm_model_items",),
              item_title="title", item_value="value", **FIELD)
    html.Div("{{ drdm_model_note }}", id="drdm-model-note", v_show=("drdm_model_note",), classes="text-caption mb-2",
             style="word-break: break-word;")
    v.VTextField(id="drdm-magnitude", label="Size (mm)", v_model_number=("drdm_magnitude",), type="number",
                 raw_attrs=['min="0"', 'step="0.5"'], placeholder="auto",
                 hint="mean |u| over the image (empty: the model's own size); one seed keeps its shape at every size",
                 persistent_hint=True, **FIELD)
    _regions()
    _slices()
    v.VTextField(id="drdm-level", label="Start level T′ (starting noise, not size)", v_model_number=("drdm_level",),
                 type="number", raw_attrs=['min="0"', ':max="drdm_level_max"'],
                 hint=("`0 … ${drdm_level_max}: the starting noise of the recovery; it changes the draw more than its "
                       "size`",), persistent_hint=True, **FIELD)
    with html.Div(classes="d-flex align-center"):
        v.VTextField(id="drdm-seed", label="Seed", v_model_number=("drdm_seed",), type="number",
                     disabled=("drdm_random_seed",), **FIELD)
        v.VCheckbox(id="drdm-random-seed", label="random", v_model=("drdm_random_seed",), density="compact",
                    hide_details=True, classes="ml-2")
    v.VTextField(id="drdm-count", label="Number of samples", v_model_number=("drdm_count",), type="number",
                 raw_attrs=['min="1"', f'max="{MAX_INTERACTIVE_COUNT}"'], **FIELD)
    with html.Div(classes="d-flex"):
        v.VSelect(id="drdm-mode", label="Mode", v_model=("drdm_mode",), items=("drdm_mode_items",), **FIELD,
                  style="flex: 1 1 0; min-width: 0;")
        v.VSelect(id="drdm-speed", label="Speed", v_model=("drdm_speed",), items=("drdm_speed_items",), **FIELD,
                  style="flex: 1 1 0; min-width: 0;")
        v.VSelect(id="drdm-device", label="Device", v_model=("drdm_device",), items=("drdm_device_items",), **FIELD,
                  style="flex: 1 1 0; min-width: 0;")
    with html.Div(classes="d-flex mb-2"):
        v.VBtn("Generate", id="drdm-generate", click=handlers.generate, color="primary", disabled=("drdm_running",),
               prepend_icon="mdi-creation", classes="mr-2")
        v.VBtn("Cancel", id="drdm-cancel", click=handlers.cancel, disabled=("!drdm_running",), variant="outlined")
    v.VProgressLinear(id="drdm-progress", model_value=("drdm_progress",), height=8, color="primary", classes="mb-1")
    html.Div("{{ drdm_status }}", id="drdm-status", classes="text-caption mb-2", style="word-break: break-word;")
    v.VAlert(id="drdm-alert", v_if=("drdm_error",), text=("drdm_error",), type="error", density="compact",
             closable=True, click_close="drdm_error = ''", classes="mb-2")


def _results(handlers: PageHandlers) -> None:
    html.Div("Results", classes="text-subtitle-2 mb-1")
    with v.VList(id="drdm-results", density="compact", classes="mb-2", border=True, max_height=180,
                 style="overflow-y: auto;"):
        with v.VListItem(v_for="item in drdm_results", key="item.value", value=("item.value",),
                         active=("drdm_selected === item.value",), click="drdm_selected = item.value",
                         classes="drdm-result"):
            v.VListItemTitle("{{ item.title }}")
            v.VListItemSubtitle("{{ item.subtitle }}")
        v.VListItem(v_if=("drdm_results.length === 0",), title="no result yet", disabled=True)
    with html.Div(v_if=("drdm_selected !== null",)):
        v.VSwitch(id="drdm-original-toggle", label="show deformed (off: original)", v_model=("drdm_show_deformed",),
                  density="compact", hide_details=True, color="primary")
        v.VSwitch(id="drdm-jacobian-toggle", label="det J overlay", v_model=("drdm_show_jacobian",), density="compact",
                  hide_details=True, color="primary")
        v.VSlider(id="drdm-jacobian-opacity", label="opacity", v_model=("drdm_jacobian_opacity",), min=0, max=1,
                  step=0.05, density="compact", hide_details=True, disabled=("!drdm_show_jacobian",))
        v.VSlider(id="drdm-jacobian-threshold", label="clear below", v_model=("drdm_jacobian_threshold",), min=0,
                  max=0.5, step=0.01, density="compact", hide_details=True, disabled=("!drdm_show_jacobian",),
                  thumb_label=True, title="det J is not coloured where |log det J| is below this")
        with html.Div(id="drdm-legend", classes="mb-2"):
            html.Div(style=LEGEND_CSS)
            with html.Div(classes="d-flex text-caption", style="justify-content: space-between;"):
                html.Span("0")
                html.Span("det J = 1")
                html.Span("2")
            html.Div("blue < 1: anatomy enlarged · red > 1: shrunk · magenta: folded (det J ≤ 0) · clear: "
                     "{{ `det J within ${Math.exp(-drdm_jacobian_threshold).toFixed(2)} … "
                     "${Math.exp(drdm_jacobian_threshold).toFixed(2)}` }}", classes="text-caption")
        v.VSwitch(id="drdm-grid-toggle", label="deformation grid", v_model=("drdm_show_grid",), density="compact",
                  hide_details=True, color="primary")
        with v.VTable(id="drdm-stats", density="compact", classes="mb-2"), html.Tbody():
            with html.Tr(v_for="row in drdm_stats", key="row.name"):
                html.Td("{{ row.name }}", classes="text-caption")
                html.Td("{{ row.value }}", classes="text-caption")
        with html.Div(classes="d-flex"):
            v.VBtn("Export transform", id="drdm-export-transform", click=_download(handlers, handlers.download_transform,
                                                                                   "_transform.h5"),
                   size="small", variant="tonal", classes="mr-2", disabled=("drdm_running",))
            v.VBtn("Export all", id="drdm-export-all", click=_download(handlers, handlers.download_all, ".zip"), size="small",
                   variant="tonal", disabled=("drdm_running",))
        html.Div("{{ drdm_exported }}", classes="text-caption mt-1", style="word-break: break-all;")


def build_page(handlers: PageHandlers) -> SinglePageWithDrawerLayout:
    """The whole page, bound to the app's state through ``handlers.server`` and to its button handlers; returns the layout
    (its ``server`` serves it)."""
    with SinglePageWithDrawerLayout(handlers.server, theme="dark") as layout:
        layout.title.set_text("DRDM: generate deformations")
        layout.drawer.width = 380
        with layout.drawer, html.Div(classes="pa-3"):
            _inputs(handlers)
            v.VDivider(classes="my-2")
            _settings(handlers)
            v.VDivider(classes="my-2")
            _results(handlers)
        with layout.content, v.VContainer(fluid=True, classes="fill-height pa-0"):
            handlers.layout_manager.initialize_layout_grid(layout)
    return layout
