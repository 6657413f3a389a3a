"""Label your own data with alscope's strategies: ``alscope label`` (docs/labelling.md)."""
