"""drdm: the Deformation-Recovery Diffusion Model engine (PyTorch; no Slicer, no Qt).

Modules: :mod:`drdm.spatial` (warping, composition, integration, Jacobians), :mod:`drdm.network`
(RecResACNet), :mod:`drdm.noise` (forward deformation process), :mod:`drdm.sampler` (Algorithm 2),
:mod:`drdm.models` (checkpoints), :mod:`drdm.metrics` (statistics), :mod:`drdm.phantoms` (test images).
"""

__version__ = "0.1.0"
