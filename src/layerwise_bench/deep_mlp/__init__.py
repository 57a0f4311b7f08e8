"""The deep-MLP benchmarks: auxiliary losses (aux), decoupled training at depth (depth), representation
similarity."""
