"""Acceleration internals under the building blocks: direct oneDNN convolutions for the network, CUDA-graph capture of
the sampler's recovery step and the byte-bounded tensor cache of :mod:`drdm.spatial`. No public API; nothing here
changes a result beyond float rounding."""
