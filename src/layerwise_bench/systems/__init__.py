"""Systems benchmarks: layer-parallel decoupled training and the z-store options, each run in worker
processes."""
