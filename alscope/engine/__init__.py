"""The experiment engine: training, inference, metrics, the trial x cycle loop."""
