"""Timing benchmarks: the step time of every registered method, the telemetry overhead."""
