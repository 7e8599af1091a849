"""Training batches prepared ahead of the training step, optionally in DataLoader worker processes.

The CPU part of a sample — choosing the clean image, augmenting it, drawing the level ``t`` — runs in
``workers`` processes (``0``: in the training process) with pinned memory on CUDA, so the GPU is not starved;
the forward deformation then runs on the training device. Each sample's randomness is one generator seeded
from ``(seed, step, index)`` (:func:`~drdm.training.data.sample_generator`): the worker hands over the
generator's state after its draws and the training process continues the same stream, so batches are
bit-identical whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .config import TrainingConfig
from .data import TrainingImages, geometric_augmentation, intensity_augmentation, sample_generator


def prepare_sample(images: TrainingImages, config: TrainingConfig, step: int, index: int
                   ) -> tuple[torch.Tensor, int, torch.Tensor]:
    """``(x0 (1, *spatial) augmented clean image, t, generator state)`` of sample ``index`` of ``step``; the
    state continues the sample's random stream (the forward process draws from it next)."""
    generator = sample_generator(config.seed, step, index)
    x0 = images.training_image(generator)
    if config.augment:
        x0 = intensity_augmentation(geometric_augmentation(x0, generator), generator)
    t = int(torch.randint(config.levels, (1,), generator=generator))
    return x0, t, generator.get_state()


def resume_generator(state: torch.Tensor) -> torch.Generator:
    """A CPU generator continuing from ``state`` (:func:`prepare_sample`)."""
    generator = torch.Generator()
    generator.set_state(state.cpu().clone())  # a copy: set_state on a view of a stacked tensor crashes (torch 2.13)
    return generator


class StepBatches(torch.utils.data.Dataset):
    """Item ``k``: this process's samples of step ``start + k``: ``(x0 (B, 1, *spatial), t (B,), states (B, n))``
    for global sample indices ``first, …, first + count − 1``."""

    def __init__(self, images: TrainingImages, config: TrainingConfig, start: int, first: int, count: int) -> None:
        self.images, self.config, self.start, self.first, self.count = images, config, start, first, count

    def __len__(self) -> int:
        return max(self.config.steps - self.start, 0)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        samples = [prepare_sample(self.images, self.config, self.start + k, self.first + i) for i in range(self.count)]
        return (torch.stack([s[0] for s in samples]), torch.tensor([s[1] for s in samples]),
                torch.stack([s[2] for s in samples]))


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # workers share the machine with the training process


def step_batches(images: TrainingImages, config: TrainingConfig, start: int, first: int, count: int,
                 device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The batches of steps ``start … config.steps − 1`` in order (:class:`StepBatches`), prepared by
    ``config.workers`` processes (pinned memory on CUDA) or, for 0, here."""
    dataset = StepBatches(images, config, start, first, count)
    if config.workers == 0:
        return (dataset[k] for k in range(len(dataset)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False, num_workers=config.workers,
                                         pin_memory=device.type == "cuda", prefetch_factor=4,
                                         worker_init_fn=_one_thread)
    return iter(loader)
