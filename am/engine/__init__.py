"""Placement and admission of a request over the site inventory (pure: no store, no substrate).

`place(request, site, usage, slice_urn=..., mint_sliver_urn=..., best_effort=False)` returns a
`Placement`: planned slivers (spec, driver, demand, claims) for the store to reserve in one
transaction, and refusals naming each element that did not fit and why.
"""
from am.engine.place import mac_for, place
from am.engine.plan import Placement, PlannedSliver, Refusal

__all__ = ["Placement", "PlannedSliver", "Refusal", "mac_for", "place"]
