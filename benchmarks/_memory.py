"""Peak-memory readings shared by the benchmark scripts (Linux /proc, else getrusage)."""

from __future__ import annotations

import resource


def _status_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def reset_peak() -> float:
    """Forget the peak so far (Linux: the data's generation temporaries) and return the
    current RSS, the baseline of "over data"."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status_mib("VmRSS") or peak_rss_mib()


def peak_rss_mib() -> float:
    """Peak RSS since :func:`reset_peak` (Linux), else of the whole process."""
    hwm = _status_mib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_result(script: str, *args: str) -> dict:
    """Run ``script`` again in a process of its own (so that its peak RSS is its own) with
    ``args``, and return the JSON object its last line of output prints."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, script, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
