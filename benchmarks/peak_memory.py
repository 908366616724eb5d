"""Run a command and sample the resident memory of its whole process tree (workers included)."""

from __future__ import annotations

import subprocess
import threading

import psutil


def run_with_peak_memory(argv: list[str]) -> tuple[str, float]:
    """(the command's standard output, its tree's peak resident memory in GB, sampled every 50 ms)."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, done = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        parent = psutil.Process(process.pid)
        while not done.is_set():
            try:
                tree = [parent, *parent.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, errors = process.communicate()
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ... failed ({process.returncode}):\n{errors[-3000:]}")
    return out, round(peak / 2**30, 3)
