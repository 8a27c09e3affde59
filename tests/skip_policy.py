"""The suite's skip policy: a test may skip only because it needs a GPU.

Every other skip hides something a user relies on (a browser check, a video,
a reference model), so CI sets DETR_FAIL_ON_SKIP=1 and such a skip fails the
run. The summary line always counts the skips, with their reasons.
"""

from __future__ import annotations

import os

import pytest

GPU_REASON = "needs a CUDA GPU"  # how a GPU-only test words its skip


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (file, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


class SkipPolicy:
    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.skips: list[tuple[str, str]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Under xdist the controller receives every worker's reports here.
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skips.append((report.nodeid, _reason(report)))

    def forbidden(self) -> list[tuple[str, str]]:
        return [(node, reason) for node, reason in self.skips if not reason.startswith(GPU_REASON)]

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.strict and self.forbidden() and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        gpu = len(self.skips) - len(self.forbidden())
        terminalreporter.write_line(f"skips: {len(self.skips)} ({gpu} need a GPU)")
        for node, reason in self.forbidden():
            verdict = "FAILS the run" if self.strict else "allowed outside CI"
            terminalreporter.write_line(f"  skipped, {verdict}: {node}: {reason}")


def register(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: the controller keeps the count
        return
    config.pluginmanager.register(SkipPolicy(os.environ.get("DETR_FAIL_ON_SKIP") == "1"), "detr-skip-policy")
