"""How the benchmarks time their calls."""

import pytest

from detr.bench import timing


def test_interleaved_cells_each_get_their_runs_spread_over_rounds(monkeypatch):
    """Every cell gets two warm-up calls and `runs` timed ones, visited in ROUNDS rounds through all
    the cells (not one cell's calls in a row), each visit after an untimed call; it gives its median
    ms per image."""
    clock, calls = [0.0], []

    def cell(name, seconds):
        def call():
            calls.append(name)
            clock[0] += seconds
        return call

    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    cells = {"a": (cell("a", 0.008), 2), "b": (cell("b", 0.003), 1), "c": (cell("c", 0.010), 5)}
    ms = timing.interleaved_ms(cells, runs=7)
    assert ms == pytest.approx({"a": 4.0, "b": 3.0, "c": 2.0})
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]  # the warm-ups
    timed = calls[6:]
    assert all(timed.count(name) == 7 + timing.ROUNDS for name in "abc")
    switches = sum(x != y for x, y in zip(timed, timed[1:]))
    assert switches >= 3 * timing.ROUNDS - 1  # every round visits every cell
