"""GENI RSpec v3 for geni-am: safe parsing and validation of requests into `rspec.model`,
advertisement and manifest builders, `geni_compressed`. Standalone (lxml only); see
docs/rspec.md. Import the submodules (`rspec.request`, `rspec.advertisement`, ...) directly:
this package module stays empty so that importing `rspec.model` stays cheap."""
