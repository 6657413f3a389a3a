"""Scenario contract and the core's standard setting."""
