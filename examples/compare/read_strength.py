"""A criterion of your own (the README's example): how strongly each channel is read by the layers after it.

``fewprune --plugin read_strength.py …`` or a sweep config's ``plugins: [read_strength.py]`` registers it, so
``read-strength+lsq`` composes with fewprune's allocators and recoveries like any built-in criterion.
"""

from fewprune.criteria import reduce_slices, register_criterion


@register_criterion("read-strength")
def read_strength(model, space, batch):
    """How strongly each channel is read: mean L1 of the weights that consume it."""
    return {g.id: reduce_slices(model, g, lambda v: v.abs().sum(), roles=("in",)) for g in space.prunable}
