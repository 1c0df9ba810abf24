"""Intracranial hemorrhage detection on head-CT DICOM slices (RSNA 2019), as literate notebooks: DICOM, windowing, datasets, fastai/timm training, metrics, triage.

Modules:

- `ich_nbdev.scale`: Data parallel training over all the GPUs of one node or of many (`torchrun`, `accelerate launch`), a checkpoint at the end of every epoch with `ich-train --resume`, gradient accumulation and step limits."""

__version__ = "0.0.1"

import warnings as _warnings
# fastai's import decorates a few functions with `torch.jit.script`, which recent torch flags as deprecated; the
# notice says nothing about this package's work, so it is hidden (only that message, only that category).
_warnings.filterwarnings('ignore', message=r'`torch\.jit\.script` is deprecated', category=FutureWarning)
