"""Explorative extreme face super-resolution: semantic maps and disentangled per-region styles (DeepSEE)

Modules:

- `deepsee.training`: Run infrastructure (atomic checkpoints, exact resume, distributed setup, logging), the losses as pure functions, the learning-rate schedule, and the trainer behind `deepsee train`."""

__version__ = "0.1.0"
