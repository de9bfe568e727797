"""Engines: the faces of a network spec (batched sampler, exact volumes, ...)."""
