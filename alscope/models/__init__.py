"""Backbone contract and the core's MLP."""
