"""Timing WSGI calls in one process, side by side, and memory per entry.

Each variant is a WSGI callable and the environs to call it with. The
variants are timed in rounds, one after another inside each round, so a
machine that slows down mid-run slows them all alike; a variant's cost is
the median of its rounds. Every call gets a fresh copy of its environ, as
a server would give it, and the bare app pays for that copy too, so the
difference between a variant and the bare app is what the variant adds.
"""

from __future__ import annotations

import cProfile
import gc
import io
import pstats
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

App = Callable[[dict[str, Any], Any], Iterable[bytes]]

API_PATH = "/api/resource"


def environ_for(token: str | None) -> dict[str, Any]:
    """The environ of a GET to the protected path, with ``token`` if given."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": API_PATH,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_ACCEPT": "application/json",
        "HTTP_USER_AGENT": "bench",
        "wsgi.url_scheme": "http",
    }
    if token is not None:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return environ


def _ignore(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    return None


def status_of(app: App, environ: dict[str, Any]) -> str:
    """Call ``app`` once and return the status it started."""
    seen: list[str] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> None:
        seen.append(status)

    for _chunk in app(environ.copy(), start_response):
        pass
    return seen[0]


def time_calls(app: App, environs: Sequence[dict[str, Any]]) -> float:
    """Return the mean nanoseconds per call of ``app`` over ``environs``."""
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for environ in environs:
            app(environ.copy(), _ignore)
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return elapsed / len(environs)


@dataclass
class Variant:
    """One way of answering a request, and how to feed it.

    :param name: the row label.
    :param app: the WSGI callable.
    :param batches: yields, for each round, the environs of that round.
    """

    name: str
    app: App
    batches: Iterator[Sequence[dict[str, Any]]]
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Half the interquartile range, relative to the median."""
        if len(self.samples) < 4:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.samples, n=4)
        return (q3 - q1) / 2 / self.median


def repeat(environs: Sequence[dict[str, Any]], calls: int) -> Iterator[list[Any]]:
    """The same environs, cycled to ``calls`` per round, every round."""
    batch = [environs[i % len(environs)] for i in range(calls)]
    while True:
        yield batch


def fresh(environs: Sequence[dict[str, Any]], calls: int) -> Iterator[list[Any]]:
    """Environs never used before: ``calls`` new ones each round."""
    for start in range(0, len(environs) - calls + 1, calls):
        yield list(environs[start : start + calls])


def paired_ratio(
    variant: Variant, reference: Variant, base: Variant
) -> tuple[float, float]:
    """Return what ``variant`` adds to ``base`` over what ``reference`` adds.

    The ratio is taken round by round, as the three ran side by side in
    each round, so a slowdown of the machine in one round cancels out.
    Returns the median ratio and half its interquartile range.
    """
    ratios = [
        (mine - bare) / (theirs - bare)
        for mine, theirs, bare in zip(
            variant.samples, reference.samples, base.samples, strict=True
        )
    ]
    median = statistics.median(ratios)
    if len(ratios) < 4:
        return median, 0.0
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return median, (q3 - q1) / 2


def run_rounds(variants: Sequence[Variant], rounds: int) -> None:
    """Time every variant once per round, in turn, ``rounds`` times."""
    for _ in range(rounds):
        for variant in variants:
            variant.samples.append(time_calls(variant.app, next(variant.batches)))


def profile_calls(app: App, environ: dict[str, Any], calls: int, top: int) -> str:
    """Profile ``calls`` calls of ``app``; return the top functions by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        app(environ.copy(), _ignore)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    return "\n".join(line.rstrip() for line in lines[start:] if line.strip())


def traced_bytes(fill: Callable[[], object]) -> int:
    """Return the bytes still allocated after ``fill()``, with what it returns kept."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = fill()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return after - before
