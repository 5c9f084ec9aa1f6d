"""`python -m benchmarks [NAME...]`: run the benchmarks and print their figures."""

from __future__ import annotations

import json
import sys

from . import intake, mitigation, scale

BENCHMARKS = {"mitigation": mitigation.run, "intake": intake.run, "scale": scale.run}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(
            f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}",
            file=sys.stderr,
        )
        return 2
    for name in names:
        print(f"== {name}", flush=True)
        print(json.dumps(BENCHMARKS[name](), indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
