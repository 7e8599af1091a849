"""The page's inputs: a volume and an optional segmentation, from a path typed in the page or an upload.

:class:`Inputs` reads a typed path only inside the data folder and through a private copy (``files``), stores an
upload under a name the app makes in the private upload folder (``uploads``), and adds what it read to the scene
as a volume node and a segmentation node. Its errors are ``ValueError`` s of one line that name the files as the
page shows them (never a server path); the app shows them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import SimpleITK as sitk
from drdm.physical.io import InputError, read_image, read_labels
from DRDMSlicerLib.mrml import segmentation_from_labels, volume_from_sitk

from .failures import one_line
from .files import DataFolder, safe_name, shown_text
from .uploads import UploadFolder, upload_label, upload_name

SEGMENT_COLOURS = [(0.9, 0.3, 0.3), (0.3, 0.8, 0.3), (0.3, 0.5, 0.95), (0.95, 0.8, 0.2), (0.8, 0.4, 0.9), (0.3, 0.85, 0.85)]


class Inputs:
    """The volume and segmentation that generation works on, and the uploads behind ``upload: NAME`` fields."""

    def __init__(self, data: DataFolder, uploads: UploadFolder) -> None:
        self.data, self.uploads = data, uploads
        self.volume_node = None
        self.segmentation_node = None
        self.sources: dict[str, Path] = {}  # "volume"/"segmentation" -> the upload behind an "upload: …" field

    def clear(self) -> None:
        """Forget the inputs and remove the uploads (a new person; the scene is emptied by the app)."""
        self.volume_node = self.segmentation_node = None
        self.uploads.clear()
        self.sources.clear()

    @contextlib.contextmanager
    def readable(self, what: str, typed: str) -> Iterator[tuple[Path, str, str]]:
        """The file behind a path field for the block, as ``(path to read, its name, how the page shows it)``: an
        upload (``upload: NAME``, in the private folder), or a private copy of a typed path inside the data folder
        (``InputError``, one line, for a path outside it, with ``..``, through an outward link, or unusable)."""
        text = str(typed or "").strip()
        upload = self.sources.get(what)
        if upload is not None and text == upload_label(upload):
            yield upload, upload_name(upload), text
            return
        with self.uploads.private_folder() as folder, self.data.private_copy(text, folder) as copy:
            yield copy, copy.name, shown_text(text)

    def read(self, volume_path: str, segmentation_path: str) -> tuple[sitk.Image, sitk.Image | None, str]:
        """``(image, labels or None, the volume's file name)`` of the path fields; a ``ValueError`` names the files
        as the page shows them (no server paths)."""
        with contextlib.ExitStack() as stack:
            volume, name, shown = stack.enter_context(self.readable("volume", volume_path))
            segmentation = stack.enter_context(self.readable("segmentation", segmentation_path)) \
                if segmentation_path else None
            try:
                image = read_image(str(volume), "volume")
                labels = read_labels(str(segmentation[0]), image) if segmentation else None
            except ValueError as error:
                message = str(error).replace(str(volume), shown)
                if segmentation:
                    message = message.replace(str(segmentation[0]), segmentation[2])
                raise InputError(message) from None
        return image, labels, name

    def store_upload(self, file: dict[str, Any], what: str) -> str:
        """Write a file chosen in the browser (trame's ``{"name", "size", "content"}``) under a name the app makes
        into the private upload folder, checked against ``--max-upload-mb``; returns what the path field shows
        (``upload: NAME``). ``ValueError`` (one line) when it is refused or cannot be stored."""
        name = safe_name(str(file.get("name", "upload")))
        content = file.get("content")
        parts = [bytes(part) for part in content] if isinstance(content, list) else [bytes(content or b"")]
        try:
            self.uploads.check_size(name, max(int(file.get("size") or 0), sum(len(part) for part in parts)))
            if not any(parts):
                raise ValueError(f"{name}: the upload is empty")
            target = self.uploads.write(name, parts, what)
        except OSError as error:
            raise InputError(f"{name}: the upload could not be stored ({one_line(error)})") from None
        self.sources[what] = target
        return upload_label(target)

    def add_to_scene(self, scene, image: sitk.Image, labels: sitk.Image | None, name: str) -> str:
        """Make ``image`` (and ``labels``, one segment per label value) the current inputs in ``scene``; returns
        the volume's stem. Earlier inputs stay in the scene (their results refer to them); their segmentation is
        hidden."""
        if self.segmentation_node is not None and self.segmentation_node.GetDisplayNode():
            self.segmentation_node.GetDisplayNode().SetVisibility(False)
        stem = name.split(".")[0] or "volume"
        self.volume_node = volume_from_sitk(scene, image, stem)
        self.segmentation_node = None
        if labels is not None:
            array = sitk.GetArrayFromImage(labels if labels.GetDimension() == 3 else sitk.JoinSeries(labels))
            values = [int(v) for v in sorted(set(array.ravel().tolist())) if v != 0]
            segments = [(f"label_{v}", f"label {v}", SEGMENT_COLOURS[i % len(SEGMENT_COLOURS)]) for i, v in enumerate(values)]
            remapped = array.copy()
            for index, value in enumerate(values, start=1):
                remapped[array == value] = index
            self.segmentation_node = segmentation_from_labels(scene, remapped, self.volume_node, segments,
                                                              f"{stem} segmentation")
        return stem

    def segment_items(self) -> list[dict]:
        """``[{"title": name, "value": segment id}]`` of the current segmentation, for the kept / deformed-only lists."""
        if self.segmentation_node is None:
            return []
        segmentation = self.segmentation_node.GetSegmentation()
        return [{"title": segmentation.GetSegment(segment_id).GetName(), "value": segment_id}
                for segment_id in segmentation.GetSegmentIDs()]

    def describe(self, image: sitk.Image, stem: str) -> str:
        """``"stack: 96 × 96 × 4 voxels, 3 segments"`` (what the panel says was loaded)."""
        text = f"{stem}: {' × '.join(str(n) for n in image.GetSize())} voxels"
        if self.segmentation_node is not None:
            text += f", {len(self.segmentation_node.GetSegmentation().GetSegmentIDs())} segments"
        return text
