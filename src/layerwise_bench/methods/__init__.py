"""The registered methods: importing this package registers the baselines, today's optimizers, Muon and
LocoProp's entries and recipes (:func:`~layerwise_bench.register_method`)."""

from . import _baselines, _locoprop, _locoprop_recipes, _today  # noqa: F401  (importing them registers the methods)
