"""drdm: the Deformation-Recovery Diffusion Model engine (PyTorch; no Slicer, no Qt).

The Python API, physical-space SimpleITK images in, SimpleITK images, transforms and fields out:
:func:`load_model`, :func:`deform_image`, :func:`synthesize`, :func:`augment`, :func:`evaluate`, :func:`jacobian`,
:func:`train`; and
numpy arrays in, numpy arrays out, several samples as one sampler batch: :func:`deform_array`.
Each imports what it needs on first call, so ``import drdm`` loads neither PyTorch nor SimpleITK.

The paper's building blocks, one step further down (tensors on the model's grid): :mod:`drdm.spatial` (warping,
composition, integration, Jacobians), :mod:`drdm.noise` (forward deformation process), :mod:`drdm.network`
(RecResACNet), :mod:`drdm.sampler` (Algorithm 2), :mod:`drdm.models` (checkpoints). The rooms: :mod:`drdm.physical`,
:mod:`drdm.registration`, :mod:`drdm.training`, :mod:`drdm.model_store`, :mod:`drdm.kernels`, :mod:`drdm.transforms`
(see ``docs/architecture.md``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .settings import DEFAULTS, settings_from
from .settings import VERSION as __version__

if TYPE_CHECKING:
    import SimpleITK as sitk

    from .models import DRDMModel
    from .physical.arrays import ArrayDeformations
    from .physical.deform import DeformationResult
    from .registration.evaluation import EvaluationReport
    from .registration.synthesis import SynthesisResult
    from .training.loop import TrainingResult

__all__ = ["__version__", "load_model", "deform_image", "deform_array", "synthesize", "augment", "evaluate", "jacobian",
           "train"]

def load_model(spec: str | os.PathLike | None = None, device: str = "auto") -> DRDMModel:
    """A DRDM model, ready to deform images.

    Args:
        spec: a name (``"cmr-2d"``, the bundled published 2D cardiac model; ``"random-field-2d"``/``"random-field-3d"``,
            the random field without learned recovery; ``"lct-3d"`` once fetched; a model made by ``drdm train`` or
            ``drdm models import``) or a file (``.pth``, ``.safetensors``, ``.json``); ``None``: ``$DRDM_MODEL``, else
            ``cmr-2d``.
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.

    Returns:
        a :class:`drdm.models.DRDMModel` (``ndims``, ``size``: its working grid in voxels, ``num_steps``: levels T).
        A name or file that is not a usable model raises :class:`drdm.errors.DRDMError` (a ``ValueError``).

    Example::

        model = drdm.load_model("cmr-2d", device="cpu")   # model.ndims == 2, model.size == 256
    """
    from .model_store.loading import load_model as load

    return load(spec, device)


def _model_for(model: str | os.PathLike | DRDMModel | None, image: Callable[[], sitk.Image], device: str) -> DRDMModel:
    """``model`` loaded on ``device``; ``"auto"``/``None``: the model that fits ``image()`` (as the CLI chooses it)."""
    from .model_store.loading import load_for_image

    return load_for_image(model, image, device)[0]


def deform_image(image: sitk.Image, labels: sitk.Image | None = None, *,
                 model: str | os.PathLike | DRDMModel | None = "auto", level: int | None = DEFAULTS.level,
                 seed: int | None = DEFAULTS.seed, device: str = DEFAULTS.device, count: int | None = None,
                 batch: bool | None = None,
                 **options: Any) -> DeformationResult | list[DeformationResult]:
    """One new, topology-preserving deformation of ``image`` (and its ``labels``), in physical space; or ``count``.

    Args:
        image: a 2D or 3D scalar SimpleITK image, any size, spacing (mm), origin and direction.
        labels: an optional integer label map on the same grid; its label values are kept.
        model: a loaded model, a name or a file (see :func:`load_model`); ``"auto"`` (default): the model that fits
            the image (a 2D image or thick-slice stack: ``cmr-2d``; a near-isotropic or CT-like volume: ``lct-3d``
            when fetched, else ``random-field-3d``).
        level: the start level T′ of the recovery: the starting noise, which changes the draw more than its size
            (``magnitude`` sets the size); default: the model's first level (48 for cmr-2d).
        seed: random seed: the same seed gives the same deformation (on the CPU bit for bit); None (default): drawn
            at random (:func:`drdm.settings.draw_seed`) and recorded in ``statistics["seed"]``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` (a loaded ``model`` is moved there).
        count: None (default): one deformation, returned as it is; a number N: a list of N deformations, seeds
            ``seed … seed+N-1``, run as sampler batches (as many per batch as memory allows); ``batch=False``: one
            sampler run each. Bit for bit: ``count=N`` equals :func:`deform_array` with ``count=N``; a batched sample
            is close to (float32 rounding through the sampler, up to about a voxel), an unbatched one identical to,
            the single deformation with its seed (:mod:`drdm.physical.arrays`).
        options: ``mode`` (``"diffeomorphic"``, the default, or ``"reference"``), ``speed`` (``"fast"``, default,
            ``"faster"`` or ``"faithful"``), ``interpolation`` (``"linear"``, ``"bspline"``, ``"nearest"``),
            ``label_method`` (``"nearest"`` or ``"onehot"``), ``slices`` (``"coherent"`` or ``"independent"``: a 2D
            model on a volume), ``slice_axis``, ``precision`` (``"exact"`` or ``"tf32"``), ``progress(step, total)``,
            ``cancel()``: as :func:`drdm.physical.deform.deform_image`; and the steering options ``magnitude`` (the
            size in mm: mean |u| over the image, same shape at every size), ``keep`` / ``only`` (label values held
            still / alone deformed) and ``margin`` (mm), :mod:`drdm.physical.steering`.

    Returns:
        a :class:`drdm.physical.deform.DeformationResult` (a list of ``count`` of them when ``count`` is given),
        everything on the input's grid: ``image`` (deformed, the
        input's pixel type), ``labels``, ``transform`` (ITK displacement-field transform, LPS mm, a pull map:
        ``SimpleITK.Resample(image, image, transform)`` reproduces the deformed image), ``field`` (the same
        displacement as a vector image, mm), ``jacobian`` (det J image), ``statistics`` (mean/p95 |u| in mm and %
        of the field of view, folding fraction, det J range, seed, level, model).

    Example::

        result = drdm.deform_image(image, labels, model="cmr-2d", seed=0, magnitude=3.0, keep=[1])
        sitk.WriteImage(result.image, "deformed.nii.gz")
        sitk.WriteTransform(result.transform, "transform.h5")
    """
    from .physical.arrays import deform_samples
    from .physical.deform import deform_image as deform

    settings, run = settings_from({**options, "level": level, "seed": seed, "device": device, "count": count or 1})
    loaded = _model_for(model, lambda: image, device)
    if count is None:
        return deform(loaded, image, labels, settings=settings, **run)
    return deform_samples(loaded, image, labels, settings=settings, batch=batch, **run)


def deform_array(array: Any, spacing: Sequence[float], labels: Any = None, *, count: int = DEFAULTS.count,
                 model: str | os.PathLike | DRDMModel | None = "auto", level: int | None = DEFAULTS.level,
                 seed: int | None = DEFAULTS.seed, device: str = DEFAULTS.device, batch: bool | None = None,
                 **options: Any) -> ArrayDeformations:
    """``count`` deformations of a numpy array (and its label map): numpy in, numpy out, 2D or 3D.

    Args:
        array: ``(y, x)`` or ``(z, y, x)`` scalar intensities (any integer or float dtype, finite).
        spacing: mm per voxel in the same array order: ``(sy, sx)`` or ``(sz, sy, sx)``.
        labels: an integer label map of the array's shape, or None.
        count: the number of samples (seeds ``seed … seed+count-1``), run as one sampler batch where memory allows
            (``batch=False``: one sampler run each).
        model, level, seed, device, options: as in :func:`deform_image` (``mode``, ``speed``, ``interpolation``,
            ``label_method``, ``slices``, ``slice_axis``, ``precision``, ``magnitude``, ``keep``, ``only``,
            ``margin``, ``progress``, ``cancel``).

    Returns:
        a :class:`drdm.physical.arrays.ArrayDeformations`: ``images`` ``(count, *shape)`` (the input's dtype),
        ``labels`` ``(count, *shape)`` or None, ``displacement`` ``(count, ndim, *shape)`` float64 in mm (channel i
        along array axis i, pull: ``images[k](p) = array(p + displacement[k](p))``), ``jacobian`` ``(count, *shape)``
        det J, ``statistics`` (one dict per sample), ``seeds``. A bad array (NaN, not 2D/3D, RGB, labels of another
        shape, spacing of the wrong length) raises one :class:`drdm.errors.DRDMError` line.

    Bit for bit: the same as :func:`deform_image` with the same ``seed``, ``count`` and options on
    ``sitk.GetImageFromArray(array)`` with ``SetSpacing(spacing[::-1])`` (origin 0, identity direction); ``count=1``
    is the single deformation :func:`deform_image` gives with that seed (:mod:`drdm.physical.arrays`).

    Example::

        out = drdm.deform_array(slice_yx, (1.5625, 1.5625), labels_yx, model="cmr-2d", count=8, speed="faster")
        out.images.shape == (8, *slice_yx.shape); out.statistics[0]["mean_mm"]
    """
    from .physical.arrays import deform_array as deform
    from .physical.arrays import image_from_array

    settings, run = settings_from({**options, "level": level, "seed": seed, "device": device, "count": count})
    image, _ = image_from_array(array, spacing, labels)
    loaded = _model_for(model, lambda: image, device)
    return deform(loaded, array, spacing, labels, settings=settings, batch=batch, **run)


def synthesize(image: sitk.Image, labels: sitk.Image | None = None, *,
               model: str | os.PathLike | DRDMModel | None = "auto", level: int | None = DEFAULTS.level,
               level_syn: int | None = None, seed: int | None = DEFAULTS.seed, device: str = DEFAULTS.device,
               mode: str = DEFAULTS.mode, speed: str = DEFAULTS.speed, **options: Any) -> SynthesisResult:
    """A registration pair with its ground-truth transform (Algorithm 4), as ``drdm synthesize`` makes each pair.

    moving = φ_aug(image), fixed = φ_syn∘φ_aug(image); φ_syn is the ground truth.

    Args:
        image, labels, model, device: as in :func:`deform_image`.
        level: T′ of φ_aug (default: the model's first level); ``level_syn``: T′ of φ_syn (default: ``level``).
        seed: φ_aug uses ``seed``, φ_syn ``seed + 1``; None (default): drawn at random and recorded.
        mode, speed: as in :func:`deform_image` (defaults: diffeomorphic, fast); options: ``interpolation``,
            ``label_method``, ``slices``, ``precision``, ``progress``, ``magnitude``, ``keep``, ``only``, ``margin``
            (each applied to both deformations).

    Returns:
        a :class:`drdm.registration.synthesis.SynthesisResult` on the input's grid: ``moving``, ``fixed``,
        ``moving_labels``, ``fixed_labels`` (SimpleITK images) and ``ground_truth`` (ITK transform, LPS mm, mapping
        fixed-grid points to moving points: ``SimpleITK.Resample(moving, fixed, ground_truth)`` reproduces ``fixed``
        up to interpolation); ``synthesis`` and ``augmentation`` hold each field's images and statistics.

    Example::

        pair = drdm.synthesize(image, labels, model="cmr-2d", seed=0)
        sitk.WriteTransform(pair.ground_truth, "ground_truth.h5")
    """
    from .registration.synthesis import synthesize_pair

    settings, run = settings_from({**options, "level": level, "seed": seed, "device": device, "mode": mode,
                                   "speed": speed})
    loaded = _model_for(model, lambda: image, device)
    return synthesize_pair(loaded, image, labels, settings=settings, level_syn=level_syn, **run)


def augment(inputs: Iterable[str | os.PathLike], out: str | os.PathLike, *,
            model: str | os.PathLike | DRDMModel | None = "auto", label_suffix: str | None = None,
            levels: Sequence[int] | None = None, per_level: int = 1, seed: int | None = DEFAULTS.seed,
            device: str = DEFAULTS.device,
            shard: tuple[int, int] = (0, 1), qa: bool = True, **options: Any) -> Path:
    """Augment a data set into a folder (Algorithm 3), as ``drdm augment`` does: the same loop and the same files.

    Args:
        inputs: image files and/or folders of images (NIfTI, NRRD, MHA, ...).
        out: the output folder (created): one sample folder per job, named after the image, level and seed, holding
            ``image.nii.gz``, ``labels.nii.gz``, ``transform.h5``, ``ddf.nii.gz``, ``jacobian.nii.gz``, ``stats.json``
            and ``qa.png`` (unless ``qa=False``); plus ``manifest.csv``. Finished folders are skipped: a run resumes.
        model, device: as in :func:`deform_image` (``"auto"`` decides from the first image).
        label_suffix: labels are ``<image stem><label_suffix>.<ext>`` beside each image (e.g. ``"_gt"``); None: no labels.
        levels: start levels T′ (default: the model's first level); ``per_level``: samples per image and level (or
            per size with ``magnitudes=[…]``, sizes in mm instead of levels: folders ``<stem>_<size>mm_seed<seed>``);
            ``seed``: job ``j`` uses ``seed + j`` (None: from :data:`drdm.settings.AUGMENT_BASE_SEED`, 0, so that a
            resumed run numbers its jobs alike); ``shard``: ``(i, n)`` runs only jobs ``j`` with ``j mod n == i``.
        options: ``mode``, ``speed``, ``interpolation``, ``label_method``, ``slices``, ``precision``, ``magnitudes``,
            ``keep``, ``only``, ``margin``, ``progress(done, total)``, ``report(line)`` (default ``print``).

    Returns:
        the manifest written (``out/manifest.csv``; with shards, this shard's until all are done).

    Example::

        drdm.augment(["data/"], "augmented/", label_suffix="_gt", levels=[48, 56], per_level=2)
    """
    from .physical.augment_data_set import augment_data_set
    from .physical.augmentation import find_inputs
    from .physical.io import check_writable, read_image

    pairs = find_inputs(inputs, label_suffix)
    folder = check_writable(out)
    settings, run = settings_from({**options, "seed": seed, "device": device})
    loaded = _model_for(model, lambda: read_image(pairs[0][0]), device)
    return augment_data_set(loaded, pairs, folder, settings=settings, levels=levels, per_level=per_level, shard=shard,
                            qa=qa, **run)


def jacobian(transform: str | os.PathLike, reference: sitk.Image) -> tuple[sitk.Image, dict]:
    """det J map and statistics of any ITK displacement-field transform on ``reference``'s grid (``drdm jacobian``).

    Args:
        transform: an ``.h5``/``.tfm`` displacement-field transform (e.g. a sample's ``transform.h5``) or a
            displacement vector image.
        reference: the image whose grid the map is computed on.

    Returns:
        ``(det J image, statistics)``: the map (float32, ``reference``'s grid) and mean/p95/max |u| in voxels, mm and %
        of the field of view, folding fraction and det J range, the figures ``stats.json`` holds.

    Example::

        det, stats = drdm.jacobian("sample/transform.h5", sitk.ReadImage("image.nii.gz"))
        stats["folding_fraction"] == 0.0
    """
    from .physical.field_summary import transform_jacobian

    return transform_jacobian(transform, reference)


def evaluate(pairs_dir: str | os.PathLike, predicted: str, out: str | os.PathLike) -> EvaluationReport:
    """Score a registration tool against the ground truth of pairs made by ``drdm synthesize`` (``drdm evaluate``).

    Args:
        pairs_dir: the folder of pair folders (each with ``moving``/``fixed`` images, labels and ``transform.h5``).
        predicted: each pair's predicted transform, ``{pair}`` standing for the pair folder's name
            (``"{pair}/predicted.h5"``, relative to ``pairs_dir``, or absolute); ITK transform files or
            displacement-field images (LPS mm), mapping fixed-grid points to moving points.
        out: the report folder, written complete: ``results.csv``, ``summary.md``, box plots, one picture per pair.

    Returns:
        a :class:`drdm.registration.evaluation.EvaluationReport`: ``rows`` (per pair and label: end-point error in
        mm, Dice, 95 % Hausdorff in mm, det J of the prediction, the tool's time) and ``warnings`` (a prediction
        that looks inverted).

    Example::

        report = drdm.evaluate("pairs/", "{pair}/predicted.h5", "report/")
    """
    from .registration.evaluation import evaluate as score

    return score(pairs_dir, predicted, out)


def train(out: str | os.PathLike, data: Iterable[str | os.PathLike] = (), *, resume: bool = False,
          progress: Callable[[int, int, dict], None] | None = None, **settings: Any) -> TrainingResult:
    """Train a DRDM model on unlabelled images (Algorithm 1), as ``drdm train`` does.

    Args:
        out: the run folder: ``last.pt`` (resume state), ``metrics.csv`` and the model ``NAME.safetensors`` + ``.json``.
        data: image files or folders (2D or 3D, any SimpleITK format); empty: procedural cardiac phantoms.
        resume: continue from ``out/last.pt``.
        progress: ``progress(step, total, values)`` after every step (values: the loss terms).
        settings: the fields of :class:`drdm.training.config.TrainingConfig`, e.g. ``ndims`` (2 or 3), ``size``
            (voxels per side of the working grid), ``steps``, ``batch``, ``lr``, ``width``, ``device``, ``name``,
            ``init`` (a model to fine-tune, whose dims, levels, width, size and noise preset are then the defaults).

    Returns:
        a :class:`drdm.training.loop.TrainingResult`: ``model``, ``weights`` and ``metadata`` (the files written),
        ``steps``, ``seconds``, ``last_loss``, ``validation_error``.

    Example::

        result = drdm.train("runs/smoke", ndims=2, size=32, width=4, steps=2, phantoms=4, val_samples=0)
    """
    from .training.initialisation import training_config
    from .training.loop import train as run

    return run(training_config(out, data, **settings), resume=resume, progress=progress)
