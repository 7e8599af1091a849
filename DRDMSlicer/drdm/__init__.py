"""drdm: the Deformation-Recovery Diffusion Model engine (PyTorch; no Slicer, no Qt).

Modules: :mod:`drdm.spatial` (warping, composition, integration, Jacobians), :mod:`drdm.network`
(RecResACNet), :mod:`drdm.noise` (forward deformation process), :mod:`drdm.sampler` (Algorithm 2),
:mod:`drdm.models` (checkpoints), :mod:`drdm.metrics` (statistics), :mod:`drdm.phantoms` (test images).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``drdm.evaluate`` (:func:`drdm.registration_evaluation.evaluate`), imported on first use: ``import drdm``
    stays light."""
    if name == "evaluate":
        from .registration_evaluation import evaluate

        return evaluate
    raise AttributeError(f"module 'drdm' has no attribute {name!r}")
