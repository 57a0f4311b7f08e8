"""The registry benchmarks on a workload (the deep autoencoder by default): run, tune, equal-time (report,
summary) and the run report."""
