from credentials import privileges as p


def test_every_am_api_method_has_operations():
    v3 = ["GetVersion", "ListResources", "Describe", "Allocate", "Renew", "Provision", "Status",
          "PerformOperationalAction", "Delete", "Shutdown"]
    v2 = ["CreateSliver", "SliverStatus", "RenewSliver", "DeleteSliver", "ListResources",
          "Shutdown"]
    for method in v3 + v2:
        assert method in p.METHOD_OPERATIONS
    assert p.METHOD_OPERATIONS["Allocate"] == ("createsliver",)
    assert p.METHOD_OPERATIONS["Delete"] == ("deleteslice",)
    assert p.METHOD_OPERATIONS["Status"] == ("getsliceresources",)
    assert p.METHOD_OPERATIONS["ListResources"] == ()


def test_control_covers_slice_methods_but_not_shutdown():
    for method in ("Describe", "Allocate", "Renew", "Provision", "Status",
                   "PerformOperationalAction", "Delete"):
        assert all(p.allowed({"control": False}, op) for op in p.METHOD_OPERATIONS[method])
    assert not p.allowed({"control": False}, "shutdown")
    assert p.allowed({"embed": False}, "shutdown")
    assert p.allowed({"authority": False}, "anything")     # bundle holds '*'
    assert not p.allowed({"info": True}, "createsliver")
    assert p.allowed(["CONTROL"], "CreateSliver")          # case-insensitive


def test_star_expansion_by_target_type():
    assert p.star_expansion("slice") == ("refresh", "embed", "bind", "control", "info")
    assert p.star_expansion("user") == ("refresh", "resolve", "info")
    assert p.star_expansion("authority", "sa") == ("authority", "sa")


def test_delegation_subset_rules():
    parent = {"control": True, "info": False}
    assert p.delegation_violation({"control": False}, parent) is None
    assert "not delegatable" in p.delegation_violation({"info": False}, parent)
    assert "widening" in p.delegation_violation({"embed": False}, parent)
    assert p.delegation_violation({"info": False}, {"authority": True}) is None
