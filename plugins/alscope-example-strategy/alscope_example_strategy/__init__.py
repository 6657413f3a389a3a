"""An example alscope plugin: information density sampling (Settles & Craven, 2008).

Kept import-free: alscope imports :mod:`alscope_example_strategy.plugin` for every
command, and the strategy (which needs torch) only when it is used.
"""

__version__ = "0.1.0"
