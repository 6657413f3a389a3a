"""Print CLI start-up times (``--help``, ``list``) and the wall time of the default run.

    python benchmarks/cli_startup.py [--repeat 5] [--skip-run]

Figures are medians of repeated subprocess runs on this machine; they are noisy on
shared machines, which is why they are printed here and not asserted in tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-run", action="store_true")
    opts = parser.parse_args()
    cli = [sys.executable, "-m", "alscope.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ALSCOPE_RESULTS_DIR": os.path.join(tmp, "results")}
        imports = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, alscope.cli; from alscope.registry import "
                "get_registry; get_registry(); print('torch' in sys.modules)",
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout.strip()
        print(f"torch imported by 'import alscope.cli' + registry: {imports}")
        for label, args in (
            ("alscope --help", ["--help"]),
            ("alscope list", ["list"]),
            ("alscope list strategies", ["list", "strategies"]),
        ):
            times = [timed([*cli, *args], env) for _ in range(opts.repeat)]
            print(
                f"{label:28s} median {statistics.median(times):.3f} s  (min {min(times):.3f}, n={len(times)})"
            )
        if not opts.skip_run:
            first = timed([*cli, "run"], env)
            print(f"{'alscope run (default, new store)':28s} {first:.2f} s wall")
            second = timed([*cli, "run"], env)
            print(f"{'alscope run (existing store)':28s} {second:.2f} s wall")


if __name__ == "__main__":
    main()
