"""drdm: the Deformation-Recovery Diffusion Model engine (PyTorch; no Slicer, no Qt).

Modules: :mod:`drdm.spatial` (warping, composition, integration, Jacobians), :mod:`drdm.network`
(RecResACNet), :mod:`drdm.noise` (forward deformation process), :mod:`drdm.sampler` (Algorithm 2),
:mod:`drdm.models` (checkpoints).
"""

from .settings import VERSION as __version__

__all__ = ["__version__"]


def __getattr__(name: str):
    """``drdm.evaluate`` (:func:`drdm.registration.evaluation.evaluate`), imported on first use: ``import drdm``
    stays light."""
    if name == "evaluate":
        from .registration.evaluation import evaluate

        return evaluate
    raise AttributeError(f"module 'drdm' has no attribute {name!r}")
