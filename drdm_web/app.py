"""DRDMWebApp: the server side of ``drdm web`` (state, handlers, the Slicer core scene and its views)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drdm.errors import is_out_of_memory, out_of_memory_message
from drdm.model_store.choice import ModelChoice, is_auto
from drdm.model_store.download import DownloadCancelled, download_needed, fetch
from drdm.sampler import GenerationCancelled
from drdm.settings import DEFAULTS, DEVICES, MAX_INTERACTIVE_COUNT, MODES, SLICE_MODES, SPEEDS, DeformationSettings
from DRDMSlicerLib.jacobian_colours import DEFAULT_JACOBIAN_THRESHOLD, JACOBIAN_SHOWN_FIRST
from DRDMSlicerLib.logic import DeformationLogic, DeformationSample
from DRDMSlicerLib.scene_snapshot import SceneSnapshot
from DRDMSlicerLib.view_layout import show_volume_planes
from trame.app import TrameApp
from trame_slicer import module as trame_slicer_module
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories

from .audit import AccessLog
from .chunks import MESSAGE_OVERHEAD
from .exports import ExportFolder, zipped
from .failures import Scrubber, one_line, page_handler
from .files import DataFolder, shown_text
from .inputs import Inputs
from .job import GenerationJob, run_on_worker
from .models import LoadedModels, model_choices
from .pages import Pages, front_door
from .panel import PageHandlers, build_page
from .results import result_items, sample_stem, stat_rows
from .session import OneBrowserProtocol, SessionGate
from .uploads import DEFAULT_MAX_UPLOAD_MB, UploadFolder
from .view_layouts import QUAD_VIEW, register_view_layouts, view_layout_for
from .ws_guard import WebSocketGuard

log = logging.getLogger("drdm.web")


@dataclass
class WebSettings:
    """What ``drdm web`` was started with."""

    volume: str | None = None
    segmentation: str | None = None
    model: str | None = None
    export_dir: Path = Path("drdm-web-exports")
    device: str = DEFAULTS.device
    data_dir: Path = Path(".")  # typed paths are resolved inside it
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    idle_minutes: float = 0.0  # 0: a connected browser holds the session until it disconnects
    secret: str = ""  # the access secret of the printed link (set by ``serve``), exchanged for a session credential
    access_log: str | None = None  # the access log's file (None: stderr)


class DRDMWebApp(TrameApp):
    """The DRDM page: a side panel on :class:`DeformationLogic` beside Slicer's slice and 3D views.

    Handlers run on the server's event loop (the MRML scene's thread); the computation runs on a worker thread
    through :meth:`DeformationLogic.compute`, and nodes are added back on the loop's thread.
    """

    def __init__(self, settings: WebSettings | None = None, server=None) -> None:
        super().__init__(server, client_type="vue3")
        self.settings = settings or WebSettings()
        self.exports = ExportFolder(self.settings.export_dir)
        self.data = DataFolder(self.settings.data_dir, hidden=[self.exports.path])  # exports: never typed back
        self.uploads = UploadFolder(self.settings.max_upload_mb)
        self.audit = AccessLog(self.settings.access_log)
        self.scrub = Scrubber((self.data.root, ""), (self.uploads.path, "upload"), (self.exports.path, "export folder"))
        self.server.enable_module(trame_slicer_module)
        self.slicer_app = SlicerApp()
        register_rca_factories(self.slicer_app.view_manager, self.server)
        self.layout_manager = LayoutManager(self.slicer_app.scene, self.slicer_app.view_manager, self.server)
        self.layout_manager.register_layout_dict(LayoutManager.default_grid_configuration())
        register_view_layouts(self.layout_manager)
        self.layout_manager.set_layout(QUAD_VIEW)
        self.logic = DeformationLogic(self.slicer_app.scene)
        self.inputs = Inputs(self.data, self.uploads)
        self.samples: list[DeformationSample] = []
        self.job: GenerationJob | None = None
        self._task: asyncio.Task | None = None  # the running generation (a reference keeps it alive)
        self.models = LoadedModels()
        self.gate = SessionGate(self.settings.idle_minutes)
        self.ws_guard: WebSocketGuard | None = None
        self._model_values = {choice["value"] for choice in model_choices(self.settings.model)}
        self._init_state()
        self.ui = build_page(PageHandlers(
            server=self.server, layout_manager=self.layout_manager, load_inputs=self.load_inputs, generate=self.generate,
            cancel=self.cancel, download_transform=self.download_transform, download_all=self.download_all))
        self._bind()
        self.snapshot = SceneSnapshot(self.slicer_app.scene)  # the empty scene a new person starts from

    # -- state ----------------------------------------------------------------------------------------

    def _init_state(self) -> None:
        s = self.state
        choices = model_choices(self.settings.model)
        s.trame__title = "DRDM: generate deformations"
        s.update(dict(
            drdm_volume_path=self.data.shown(self.settings.volume) if self.settings.volume else "",
            drdm_segmentation_path=self.data.shown(self.settings.segmentation) if self.settings.segmentation else "",
            drdm_loaded="", drdm_model_items=choices, drdm_model=choices[0]["value"] if choices else None,
            drdm_level=48, drdm_level_max=80, drdm_seed=0, drdm_random_seed=True, drdm_count=DEFAULTS.count,
            drdm_mode=DEFAULTS.mode, drdm_mode_items=list(MODES), drdm_speed=DEFAULTS.speed, drdm_speed_items=list(SPEEDS),
            drdm_device=self.settings.device, drdm_device_items=list(DEVICES),
            drdm_slices=DEFAULTS.slices, drdm_slices_items=list(SLICE_MODES), drdm_slices_visible=False,
            drdm_model_note="",
            drdm_running=False, drdm_progress=0, drdm_status="ready", drdm_error="",
            drdm_magnitude=None, drdm_keep=[], drdm_only=[], drdm_margin=DEFAULTS.margin, drdm_segment_items=[],
            drdm_results=[], drdm_selected=None, drdm_show_deformed=True, drdm_show_jacobian=JACOBIAN_SHOWN_FIRST,
            drdm_jacobian_opacity=0.5, drdm_jacobian_threshold=DEFAULT_JACOBIAN_THRESHOLD, drdm_show_grid=False,
            drdm_stats=[], drdm_selected_stem="drdm", drdm_upload=None, drdm_segmentation_upload=None,
            drdm_exported="", drdm_generations=0, drdm_data_dir=self.data.root.name or "/",
            drdm_max_upload_bytes=self.uploads.max_bytes, drdm_max_upload_mb=f"{self.settings.max_upload_mb:g}",
        ))

    def _bind(self) -> None:
        s = self.state
        s.change("drdm_model")(lambda drdm_model, **_: self.on_model_changed(drdm_model))
        s.change("drdm_selected", "drdm_show_deformed", "drdm_show_jacobian", "drdm_jacobian_opacity",
                 "drdm_jacobian_threshold", "drdm_show_grid")(lambda **_: self.refresh_view())
        s.change("drdm_upload")(lambda drdm_upload, **_: self.on_upload(drdm_upload, "volume"))
        s.change("drdm_segmentation_upload")(lambda drdm_segmentation_upload, **_:
                                             self.on_upload(drdm_segmentation_upload, "segmentation"))
        self.server.controller.on_server_ready.add(self._on_ready)
        self.server.controller.on_server_bind.add(self._on_bind)
        self.server.add_protocol_to_configure(self._configure_protocol)

    def _configure_protocol(self, protocol) -> None:
        """wslink's authentication hook: a session credential, then one browser at a time (see ``session``)."""
        protocol.registerLinkProtocol(OneBrowserProtocol(self.gate, self.start_session, self._close_client, self.audit))

    def _on_bind(self, web_server) -> None:
        """Before every route of wslink: the front door (``pages``: the secret exchanged for a credential, the app,
        in-use or no-access page for every spelling) and the guarded WebSocket route (``ws_guard``)."""
        self.ws_guard = WebSocketGuard(web_server, self.gate, self.audit, self.uploads.max_bytes + MESSAGE_OVERHEAD,
                                       on_message=self.gate.seen)
        pages = Pages(self.gate, self.settings.secret, Path(self.server._www) / "index.html",
                      self.settings.idle_minutes, self.audit)
        web_server.app.middlewares.append(front_door(pages, self.ws_guard))

    async def _close_client(self, client_id: str) -> None:
        if self.ws_guard is not None:
            await self.ws_guard.close_client(client_id)

    def _on_ready(self, **_) -> None:
        if self.state.drdm_model:
            self.on_model_changed(self.state.drdm_model)
        self._load_startup_inputs()

    def _load_startup_inputs(self) -> None:
        """The operator's VOLUME / --segmentation (command line): loaded at start and for each new person."""
        if self.settings.volume:
            self._load(self.settings.volume, self.settings.segmentation or "")

    # -- sessions -------------------------------------------------------------------------------------

    def start_session(self, new_person: bool) -> None:
        """A browser was admitted (``session.OneBrowserProtocol``); a different person than the last one starts from
        an empty scene. The browser that leaves keeps its work until a different person comes."""
        if new_person and (self.samples or self.inputs.volume_node is not None or self.job is not None
                           or self.state.drdm_volume_path != self._startup_state_path()):
            self.reset_scene()

    def _startup_state_path(self) -> str:
        return self.data.shown(self.settings.volume) if self.settings.volume else ""

    def reset_scene(self) -> None:
        """Forget everything of the previous person: the running generation (the gate already counted the new
        person, so it shows nothing more), results, inputs, uploads, state."""
        if self.job is not None:
            self.job.cancel()
        self.samples, self.job = [], None
        self.snapshot.restore()
        self.inputs.clear()
        model = self.state.drdm_model
        self._init_state()
        self.state.drdm_model = model
        self.set_layout(QUAD_VIEW)
        self._load_startup_inputs()
        for view in self.slicer_app.view_manager.get_views():
            view.schedule_render()

    def set_layout(self, layout_id: str) -> None:
        """Change the view layout, also in a connected browser. trame-server sends a state key only when its text
        differs from what it last sent, and its record of the page template goes stale when the layout changes
        before a browser connects (the browser then fetches the whole state): the template is pushed explicitly."""
        self.layout_manager.set_layout(layout_id)
        ui = getattr(self, "ui", None)
        if ui is not None:
            self.push_state(ui._template_name)  # "trame__template_main"

    def push_state(self, *keys: str) -> None:
        """Send ``keys`` to a connected browser even when trame-server's record of what it last sent is stale (a
        value changed before the browser connected and then changed back is otherwise never sent)."""
        protocol = getattr(self.server, "protocol", None)
        if protocol is not None and getattr(protocol, "publish", None) is not None:
            self.state.flush()
            protocol.force_push_state(*keys)

    def fail(self, message: str) -> None:
        """Show an error (one line, the server's folders replaced by what the page calls them) in the status line and
        the alert; the scene is left as it was. The server log gets it at debug level only (it names files)."""
        scrub = getattr(self, "scrub", None)
        message = scrub(message) if scrub else shown_text(str(message).split("\n", 1)[0], 300)
        log.debug("drdm web: %s", message)
        self.state.drdm_status = f"error: {message}"
        self.state.drdm_error = message

    # -- inputs ---------------------------------------------------------------------------------------

    @page_handler("load")
    def load_inputs(self) -> None:
        """Load the volume (and segmentation) named by the path fields, replacing the current inputs; a path
        outside the data folder is refused and nothing is loaded."""
        self.state.drdm_error = ""
        volume_path = str(self.state.drdm_volume_path or "").strip()
        segmentation_path = str(self.state.drdm_segmentation_path or "").strip()
        if not volume_path:
            self.fail("enter a volume path inside the data folder (or upload one)")
            return
        self._load(volume_path, segmentation_path)

    def _load(self, volume_path: str, segmentation_path: str) -> None:
        """Read and show the inputs; an error names the files as the page shows them (no server paths)."""
        try:
            image, labels, name = self.inputs.read(volume_path, segmentation_path)
        except ValueError as error:
            self.fail(str(error))
            return
        self._replace_inputs(image, labels, name)

    def _replace_inputs(self, image, labels, name: str) -> None:
        """Show newly read inputs: their nodes, the views' layout for the volume, the panel's segment lists."""
        scene = self.slicer_app.scene
        stem = self.inputs.add_to_scene(scene, image, labels, name)
        self.slicer_app.display_manager.show_volume(self.inputs.volume_node, do_reset_views=True)
        self.set_layout(view_layout_for(show_volume_planes(scene, self.inputs.volume_node)))
        self.state.drdm_segment_items = self.inputs.segment_items()
        self.state.drdm_keep, self.state.drdm_only = [], []
        self.push_state("drdm_segment_items", "drdm_keep", "drdm_only")  # reset and reloaded: the same text as before
        self.state.drdm_loaded = self.inputs.describe(image, stem)
        self.state.drdm_status = f"loaded {stem}"
        if self.state.drdm_model:
            self.on_model_changed(self.state.drdm_model)  # auto and the slices choice follow the volume

    @page_handler("upload")
    def on_upload(self, files, what: str) -> None:
        """A file chosen in the browser: checked against ``--max-upload-mb`` (the WebSocket guard refused a larger
        message at its first chunk already), written under a name the app makes into the private upload folder,
        then loaded."""
        if not files:
            return
        try:
            label = self.inputs.store_upload(files[0] if isinstance(files, list) else files, what)
        except ValueError as error:
            self.fail(str(error))
            return
        finally:  # the bytes are on disk now (or refused): not kept in the state
            self.state["drdm_upload" if what == "volume" else "drdm_segmentation_upload"] = None
        if what == "volume":
            self.state.drdm_volume_path = label
            self.state.drdm_segmentation_path = ""
        else:
            self.state.drdm_segmentation_path = label
        self.load_inputs()

    # -- model ----------------------------------------------------------------------------------------

    def resolve_model(self, name: str) -> ModelChoice | None:
        """What the model select means now: ``auto`` decided from the loaded volume (with its reason;
        ``None`` before a volume is loaded), any other choice as it is."""
        if not is_auto(name):
            return ModelChoice(str(name))
        if self.inputs.volume_node is None:
            return None
        return self.logic.model_for(self.inputs.volume_node, name)

    @page_handler("model")
    def on_model_changed(self, name: str) -> None:
        """The level range follows the model (0 … T; the level goes to the model's first level); the note under the
        select says what ``auto`` chose and why, or that a download is needed; the slices choice is shown for a 2D
        model on a 3D volume only."""
        s = self.state
        s.drdm_error = ""
        if name not in self._model_values:  # the state is the browser's to set: only the offered models
            self.fail("choose a model from the list")
            return
        try:
            choice = self.resolve_model(name)
            if choice is None:
                s.drdm_model_note = "auto: decided when a volume is loaded"
                s.drdm_slices_visible = False
                self.push_state("drdm_model_note", "drdm_slices_visible")
                return
            facts = self.models.facts(choice)
        except ValueError as error:
            self.fail(str(error))
            return
        s.drdm_level_max = facts.steps
        s.drdm_level = min(facts.first_level, facts.steps)
        s.drdm_model_note = facts.note
        volume = self.inputs.volume_node
        s.drdm_slices_visible = volume is not None and self.logic.slices_apply(volume, facts.model)
        self.push_state("drdm_level_max", "drdm_level", "drdm_model_note", "drdm_slices_visible")

    # -- generation -----------------------------------------------------------------------------------

    @page_handler("generate")
    def generate(self) -> None:
        """Check and copy the inputs here (the scene's thread), then compute on a worker thread.

        The click returns at once: the websocket handles one message at a time, and Cancel must get through.
        """
        s = self.state
        if s.drdm_running:
            return
        s.drdm_error = ""
        if self.inputs.volume_node is None:
            self.fail("load a volume first")
            return
        if s.drdm_model not in self._model_values:
            self.fail("choose a model from the list")
            return
        try:
            settings, steering = self._settings()
            choice = self.resolve_model(s.drdm_model)
            if download_needed(choice.spec):
                self._start_download(choice.spec)
                return
            model = self.models.get(choice.spec, s.drdm_device)
            request = self.logic.prepare(self.inputs.volume_node, self.inputs.segmentation_node, model=model,
                                         settings=settings, **steering)
            request.choice = choice
            s.drdm_seed = request.seed  # the seed drawn shows in the panel: typing it in repeats the run
        except (TypeError, ValueError) as error:
            self.fail(str(error))
            return
        self.job = GenerationJob()
        s.update(dict(drdm_running=True, drdm_progress=0, drdm_status="generating: starting…"))
        self._task = asyncio.get_running_loop().create_task(self._run(request, self.job))

    def _settings(self) -> tuple[DeformationSettings, dict]:
        """The one settings object of this click, from the panel's state (which a raw WebSocket client can set to
        anything: every value is parsed here and judged by :class:`DeformationSettings`; a seed left to chance is
        drawn once, later), and the kept / deformed-only segments for ``DeformationLogic.prepare``."""
        s = self.state
        count = int(s.drdm_count)
        if count > MAX_INTERACTIVE_COUNT:
            raise ValueError(f"at most {MAX_INTERACTIVE_COUNT} samples at a time, got {count}")
        steering = self._steering()
        settings = DeformationSettings(
            level=int(s.drdm_level), seed=None if s.drdm_random_seed else int(s.drdm_seed), count=count,
            mode=s.drdm_mode, speed=s.drdm_speed, device=s.drdm_device,
            slices=s.drdm_slices if s.drdm_slices in SLICE_MODES else DEFAULTS.slices,
            magnitude=steering.pop("magnitude"), margin=steering.pop("margin"))
        return settings, steering

    def _steering(self) -> dict:
        """The size (empty or 0: the model's own) and the regions from the panel, as ``DeformationLogic.prepare`` takes
        them; segment ids the loaded segmentation does not have are refused (the browser's state is not trusted)."""
        s = self.state
        size = s.drdm_magnitude
        magnitude = None if size in (None, "", 0) else float(size)
        known = {item["value"] for item in s.drdm_segment_items or []}
        keep, only = list(s.drdm_keep or []), list(s.drdm_only or [])
        if any(segment not in known for segment in keep + only):
            raise ValueError("choose the kept / deformed-only segments from the list")
        margin = DEFAULTS.margin if s.drdm_margin in (None, "") else float(s.drdm_margin)
        return {"magnitude": magnitude, "keep": keep, "only": only, "margin": margin}

    async def _run(self, request, job: GenerationJob) -> None:
        """Wait for the worker with a live progress bar, then add the nodes on this thread."""
        s = self.state
        started = time.perf_counter()
        future = await run_on_worker(job, lambda: DeformationLogic.compute(request, job.progress, job.cancelled),
                                     lambda: f"generating: {job.describe()}", self._show_progress, self.gate.same_person())
        if future is None:  # a new person took the server: nothing of this run is shown
            return
        with s:
            try:
                samples = self.logic.add_samples(request, future.result())
            except GenerationCancelled:
                s.drdm_status = "generation cancelled"
            except ValueError as error:
                self.fail(str(error))
            except Exception as error:  # shown, never a dead server
                log.warning("drdm web: a generation failed (%s)", type(error).__name__)
                log.debug("drdm web: a generation failed", exc_info=True)
                self.fail(out_of_memory_message(error) if is_out_of_memory(error) else f"{type(error).__name__}: {error}")
            else:
                self.samples.extend(samples)
                self._refresh_results()
                s.drdm_selected = len(self.samples) - 1
                s.drdm_generations += 1
                self.refresh_view()
                s.drdm_status = (f"{len(samples)} deformation(s) in {time.perf_counter() - started:.1f} s; "
                                 f"{request.model_line}: done")
            finally:
                s.drdm_running = False
                s.drdm_progress = 0
                self.job = None

    def _start_download(self, name: str) -> None:
        """Fetch a registry model (verified) on a worker thread with progress and Cancel, then generate."""
        self.job = GenerationJob()
        self.state.update(dict(drdm_running=True, drdm_progress=0, drdm_status=f"downloading {name}…"))
        self._task = asyncio.get_running_loop().create_task(self._download(name, self.job))

    async def _download(self, name: str, job: GenerationJob) -> None:
        s = self.state
        future = await run_on_worker(
            job, lambda: fetch(name, progress=lambda done, total: job.progress(done, total or 0), cancel=job.cancelled),
            lambda: f"downloading {name}: {job.step / 1e6:.1f} MB", self._show_progress, self.gate.same_person())
        if future is None:  # a new person took the server: dropped
            return
        with s:
            s.drdm_running, s.drdm_progress, self.job = False, 0, None
            try:
                future.result()
            except DownloadCancelled:
                s.drdm_status = "download cancelled; nothing was kept"
                return
            except ValueError as error:
                self.fail(str(error))
                return
            self.on_model_changed(s.drdm_model)
        self.generate()

    def _show_progress(self, percent: float, status: str) -> None:
        """The progress bar and status line while a job runs on the worker thread."""
        s = self.state
        with s:
            s.drdm_progress, s.drdm_status = percent, status

    @page_handler("cancel")
    def cancel(self) -> None:
        """Stop the running generation or download (within one network step; nothing is added)."""
        if self.job is not None:
            self.job.cancel()
            self.state.drdm_status = "cancelling…"

    # -- results and views ----------------------------------------------------------------------------

    def _refresh_results(self) -> None:
        alive = [s for s in self.samples if self.logic.is_alive(s)]
        if len(alive) != len(self.samples):
            self.samples = alive
        self.state.drdm_results = result_items(self.samples)

    def selected_sample(self) -> DeformationSample | None:
        index = self.state.drdm_selected
        if index is None or not 0 <= int(index) < len(self.samples):
            return None
        sample = self.samples[int(index)]
        return sample if self.logic.is_alive(sample) else None

    @page_handler("view")
    def refresh_view(self) -> None:
        """Apply the panel's view toggles to the selected result (through the logic, the view state's owner)."""
        sample = self.selected_sample()
        if sample is None:
            self.state.drdm_stats = []
            return
        s = self.state
        self.logic.show_sample(sample, deformed=bool(s.drdm_show_deformed),
                               jacobian=bool(s.drdm_show_jacobian), jacobian_opacity=float(s.drdm_jacobian_opacity),
                               grid=bool(s.drdm_show_grid), jacobian_threshold=float(s.drdm_jacobian_threshold or 0))
        for view in self.slicer_app.view_manager.get_slice_views():
            view.schedule_render()
        s.drdm_stats = stat_rows(sample.statistics)
        s.drdm_selected_stem = sample_stem(sample)

    # -- export ---------------------------------------------------------------------------------------

    def _export(self, write: Callable[[DeformationSample], Path]) -> Path | None:
        """Run ``write(selected sample)`` (it returns what it wrote in the export folder); report that export by its
        name in the export folder, or the error (one line)."""
        sample = self.selected_sample()
        if sample is None:
            self.fail("select a result first")
            return None
        try:
            path = write(sample)
        except (OSError, ValueError) as error:
            self.fail(f"export failed: {one_line(error)}")
            return None
        shown = self.exports.shown(path)
        self.state.drdm_exported = f"in the export folder: {shown}"
        self.state.drdm_status = f"exported {shown}: done"
        return path

    def export_transform(self) -> Path | None:
        """Write the selected result's transform as ITK ``.h5`` into the export folder, under a new name made from
        the result (``<stem>_transform.h5``, ``…-2.h5`` if taken), never one from the page."""
        return self._export(lambda sample: self.exports.add_file(
            f"{sample_stem(sample)}_transform.h5", lambda path: self.logic.export_transform(sample.transformNode, path)))

    def export_all(self) -> Path | None:
        """Write the selected result as the CLI's sample folder into the export folder (a new name if taken)."""
        return self._export(lambda sample: self.exports.add_folder(
            lambda parent: self.logic.export_sample_folder(sample, parent)))

    @page_handler("export")
    def download_transform(self):
        """Export, then hand the file to the browser as a download."""
        path = self.export_transform()
        return self.server.protocol.addAttachment(path.read_bytes()) if path else None

    @page_handler("export")
    def download_all(self):
        """Export the sample folder, then hand it to the browser as a zip."""
        folder = self.export_all()
        if folder is None:
            return None
        return self.server.protocol.addAttachment(zipped(folder))
