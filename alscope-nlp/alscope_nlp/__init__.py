"""alscope-nlp: the text domain for alscope (datasets and transformer backbones).

Importing this package imports nothing heavy; the hook module ``alscope_nlp.plugin``
only returns specs, and torch, transformers and datasets are imported when a text
component is actually used.
"""

__version__ = "0.1.0"
