__version__ = "0.0.1"

import warnings as _warnings
# fastai's import decorates a few functions with `torch.jit.script`, which recent torch flags as deprecated; the
# notice says nothing about this package's work, so it is hidden (only that message, only that category).
_warnings.filterwarnings('ignore', message=r'`torch\.jit\.script` is deprecated', category=FutureWarning)
