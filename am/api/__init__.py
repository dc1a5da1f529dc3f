"""Thin XML-RPC adapters: AM API v3 (`am.api.v3`) and v2 (`am.api.v2`) over `am.service`."""
