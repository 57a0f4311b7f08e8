"""Deep supervision on a transformer LM: early exits through the shared head, weighted (``bench exits``)."""
