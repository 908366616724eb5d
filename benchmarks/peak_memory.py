"""Run a command and sample the resident memory of its whole process tree (workers included)."""

from __future__ import annotations

import subprocess
import threading

import psutil


def run_with_peak_memory(argv: list[str]) -> tuple[str, float]:
    """(the command's standard output, its tree's peak resident memory in GB, sampled every 50 ms)."""
    out, tree, _ = run_with_peaks(argv)
    return out, tree


def run_with_peaks(argv: list[str]) -> tuple[str, float, float]:
    """As run_with_peak_memory, with the peak of its largest single process too (a rank, say), in GB."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = single = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak, single
        parent = psutil.Process(process.pid)
        while not done.is_set():
            try:
                sizes = [p.memory_info().rss for p in [parent, *parent.children(recursive=True)] if p.is_running()]
                peak, single = max(peak, sum(sizes)), max([single, *sizes])
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
    return out, round(peak / 2**30, 3), round(single / 2**30, 3)
