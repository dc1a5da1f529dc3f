"""One harness under libFuzzer: `python -m fuzz.one NAME [libFuzzer flags] [corpus dirs]`.
`fuzz.run` starts one of these per harness; run it by hand to replay a crash file
(`python -m fuzz.one api crash-1234...`)."""
from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    import atheris

    from fuzz.harness import HARNESSES

    if len(argv) < 2 or argv[1] not in HARNESSES:
        print(f"usage: python -m fuzz.one {{{','.join(HARNESSES)}}} [libFuzzer args]",
              file=sys.stderr)
        raise SystemExit(2)
    harness = HARNESSES[argv[1]]
    with atheris.instrument_imports(include=list(harness.instrument)):
        test_one_input = harness.build()
    atheris.Setup([argv[0], *argv[2:]], test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
