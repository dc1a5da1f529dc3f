"""GENI identity and authorization, usable on its own (no Flask, no SQLAlchemy).

Modules: `urn` (GENI URNs), `certs` (identity certificates, trust roots), `crl` (revocation
lists of the trust roots' CAs), `verify` (`CredentialVerifier`: verify credentials, authorize
AM API calls, speaks-for), `privileges` (rights table, method -> operations), `cache`
(verification cache), `sign` (create, delegate, sign), `authority` (development authority),
`cli` (`geni-am authority|credential`).
See docs/credentials.md.
"""
