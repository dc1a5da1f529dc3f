"""The read-only operator dashboard (HTML + SVG topology), mounted by `am.app.create_app` at
/dashboard. See docs/dashboard.md."""
from am.web.dashboard import make_dashboard
from am.web.topology import manifest_to_svg

__all__ = ["make_dashboard", "manifest_to_svg"]
