"""The plugin's test suite: real pyworkflow projects, the real engine, simulated tomograms."""
