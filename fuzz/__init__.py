"""Coverage-guided fuzzing (atheris / libFuzzer) of the AM's three parsers of untrusted input:
the XML-RPC request path (`api`), the credential verifier (`credential`) and the request RSpec
parser (`rspec`). `python -m fuzz.run --seconds 600` runs them by hand; docs/testing-under-faults.md."""
