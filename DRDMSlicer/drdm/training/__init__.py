"""Algorithm 1, self-supervised training: the run's configuration, data and augmentation, batches, one step, the
losses, checkpoints and logs, the starting weights, the recovery-error table that judges a model, procedural
phantoms (data when there is none) and the torchrun process placement. Entry point: :func:`drdm.train`."""
