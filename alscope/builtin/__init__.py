"""The core's own plugin: registered through the ``alscope`` entry point like any other."""
