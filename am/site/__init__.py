"""The default site: the real substrate `geni-am serve` brings up on this machine when it is
given no inventory (docs/quickstart.md). See `am.site.default` for how a part is added."""
from am.site.base import ComponentInfo, Fragment, SiteContext, SiteError, SiteHelper, site_tag
from am.site.default import DefaultSite, DownReport, RunningSite, default_helpers

__all__ = ["ComponentInfo", "DefaultSite", "DownReport", "Fragment", "RunningSite", "SiteContext",
           "SiteError", "SiteHelper", "default_helpers", "site_tag"]
