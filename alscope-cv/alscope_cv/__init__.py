"""alscope-cv: image datasets and backbones for alscope.

Installing the distribution registers its components through the ``alscope`` entry
point (namespace ``cv``); nothing here is imported until a component is used, so this
package imports neither torch nor torchvision at import time.
"""

from __future__ import annotations

__version__ = "0.1.0"
