"""The protocol every benchmark shares: a method and the registry, the training harness, records (files,
machine, provenance), plotting, tuned values, the slow-run check."""
