"""pytest plugin: a CPU-seconds budget per test, so that growth of the suite shows when it happens.

A test's CPU time is user + system time, from just before its setup to the end of its teardown,
of this process (all threads) and of the child processes it waited for (getrusage SELF +
CHILDREN). Module- and session-scoped fixtures count on the test whose setup builds them (and on
the test whose teardown ends them), so a costly shared fixture is seen on its first user. CPU time,
not wall time: it does not depend on what else the machine is running.

- ini option `cpu_budget_s` (pyproject.toml; 0 disables): a test over it gets an error at
  teardown that says how many CPU seconds it used, so the run fails; tests carrying one of the
  markers in `cpu_budget_exempt_markers` (the opt-in full-size proofs) are measured, not limited;
- the terminal summary lists the tests that used the most CPU seconds (`cpu_budget_report`); each
  test's CPU seconds ride on its teardown report, so a pytest-xdist run lists them from every worker.

Loaded by tests/conftest.py (`pytest_plugins`); tests/test_cpu_budget.py runs it on tiny busy loops.
"""

from __future__ import annotations

import resource

import pytest

BUDGET_INI = "cpu_budget_s"
REPORT_INI = "cpu_budget_report"
EXEMPT_INI = "cpu_budget_exempt_markers"
CPU_PROPERTY = "cpu_seconds"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(BUDGET_INI, "CPU seconds (user+sys, this process and waited-for children) one test may use from "
                              "setup to teardown, fixtures it triggers included; 0 = no budget", default="0")
    parser.addini(REPORT_INI, "how many of the most CPU-hungry tests the summary lists", default="15")
    parser.addini(EXEMPT_INI, "markers of opt-in tests the budget does not apply to (they are still listed)",
                  type="args", default=[])


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its terminated, waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class CpuBudget:
    def __init__(self, budget: float, report: int, exempt_markers: list[str]) -> None:
        self.budget = budget
        self.report = report
        self.exempt_markers = exempt_markers
        self.started: dict[str, float] = {}
        self.used: dict[str, float] = {}
        self.exempt: set[str] = set()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem):
        self.started[item.nodeid] = cpu_seconds()
        try:
            return (yield)
        finally:
            self.started.pop(item.nodeid, None)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        if call.when == "teardown" and item.nodeid in self.started:
            used = cpu_seconds() - self.started[item.nodeid]
            exempt = any(item.get_closest_marker(name) for name in self.exempt_markers)
            # on the report, so that under pytest-xdist the controller (which prints the summary) sees it
            report.user_properties.append((CPU_PROPERTY, (used, exempt)))
            if self.budget > 0 and used > self.budget and not exempt and report.outcome != "failed":
                report.outcome = "failed"
                report.longrepr = (f"CPU budget exceeded: {item.nodeid} used {used:.1f} CPU s (setup + call + teardown, "
                                   f"children included) > {BUDGET_INI} = {self.budget:g} s")
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for key, value in report.user_properties:
            if key == CPU_PROPERTY:
                used, exempt = value
                self.used[report.nodeid] = used
                if exempt:
                    self.exempt.add(report.nodeid)

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config) -> None:
        if not self.used:
            return
        ranked = sorted(self.used.items(), key=lambda kv: -kv[1])
        budget = f"{self.budget:g} CPU s per test" if self.budget > 0 else "none"
        terminalreporter.write_sep("=", f"CPU seconds per test, slowest {min(self.report, len(ranked))} (budget: {budget})")
        for nodeid, used in ranked[: self.report]:
            flag = "  (exempt)" if nodeid in self.exempt else "  OVER BUDGET" if self.budget > 0 and used > self.budget else ""
            terminalreporter.write_line(f"{used:9.1f}  {nodeid}{flag}")
        terminalreporter.write_line(f"{sum(self.used.values()):9.1f}  total over {len(ranked)} tests")


def pytest_configure(config: pytest.Config) -> None:
    budget = float(config.getini(BUDGET_INI) or 0)
    report = int(config.getini(REPORT_INI) or 0)
    exempt = list(config.getini(EXEMPT_INI))
    config.pluginmanager.register(CpuBudget(budget, report, exempt), "cpu_budget_tracker")
