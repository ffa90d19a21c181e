"""The CPU budget per test (tests/cpu_budget.py) on tiny busy loops in a pytest run of their own:
over the budget fails the run, and the CPU of module fixtures and of waited-for child processes
counts on the test that triggers it. Busy loops burn CPU time (time.process_time), never sleep."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_TESTS = Path(__file__).resolve().parent

BURN = """
import subprocess, sys, time

import pytest


def burn(seconds):
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass
"""


def run(pytester: pytest.Pytester, budget: str, body: str, *options: str) -> pytest.RunResult:
    pytester.makepyfile(test_busy=BURN + body)
    return pytester.runpytest("-p", "cpu_budget", "-o", f"cpu_budget_s={budget}", "-o", "cpu_budget_report=5", *options)


def test_a_test_over_the_budget_fails_the_run_and_says_why(pytester):
    result = run(pytester, "0.4", """
def test_busy():
    burn(1.0)


def test_idle():
    pass
""")
    result.assert_outcomes(passed=2, errors=1)  # test_busy passes its call, then errors at teardown
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_busy*",
        "*CPU budget exceeded: test_busy.py::test_busy used * CPU s*> cpu_budget_s = 0.4 s*",
        "*CPU seconds per test, slowest 2 (budget: 0.4 CPU s per test)*",
        "*test_busy.py::test_busy  OVER BUDGET",
    ])
    assert "test_idle  OVER BUDGET" not in result.stdout.str()


def test_within_the_budget_or_without_one_the_run_passes_and_lists_cpu_seconds(pytester):
    body = """
def test_busy():
    burn(0.3)
"""
    result = run(pytester, "30", body)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*CPU seconds per test*(budget: 30 CPU s per test)*", "*test_busy.py::test_busy"])
    unlimited = run(pytester, "0", body)
    unlimited.assert_outcomes(passed=1)
    unlimited.stdout.fnmatch_lines(["*(budget: none)*"])


def test_cpu_of_a_waited_for_child_process_counts(pytester):
    result = run(pytester, "0.4", """
def test_child():
    code = "import time\\nstart = time.process_time()\\nwhile time.process_time() - start < 1.0: pass"
    subprocess.run([sys.executable, "-c", code], check=True)
""")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*CPU budget exceeded: test_busy.py::test_child used*"])


def test_a_module_fixture_counts_on_the_test_that_builds_it(pytester):
    result = run(pytester, "0.4", """
@pytest.fixture(scope="module")
def model():
    burn(1.0)
    return "trained"


def test_first(model):
    assert model == "trained"


def test_second(model):
    assert model == "trained"
""")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*CPU budget exceeded: test_busy.py::test_first used*"])
    assert "test_second used" not in result.stdout.str()


def test_a_test_with_an_exempt_marker_is_listed_but_not_limited(pytester):
    result = run(pytester, "0.4", """
@pytest.mark.fullsize
def test_full():
    burn(1.0)


def test_reduced():
    burn(1.0)
""", "-o", "cpu_budget_exempt_markers=fullsize", "-o", "markers=fullsize: opt-in")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*CPU budget exceeded: test_busy.py::test_reduced used*"])
    assert "test_full used" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*test_busy.py::test_full  (exempt)"])


def test_under_xdist_workers_the_budget_fails_and_the_table_lists_every_worker_s_tests(pytester):
    """The suite runs on pytest-xdist workers (pyproject addopts): the budget is checked in the worker,
    and the CPU seconds travel on the reports to the controller, which prints the table."""
    # xdist's workers start with the controller's sys.path, which lacks tests/: the plugin comes in as
    # the run's conftest.py instead of by name
    pytester.makeconftest((REPO_TESTS / "cpu_budget.py").read_text())
    pytester.makepyfile(test_busy=BURN + """
def test_busy():
    burn(1.0)


def test_idle():
    pass
""")
    result = pytester.runpytest("-o", "cpu_budget_s=0.4", "-o", "cpu_budget_report=5", "-n", "2", "--dist", "load")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines([
        "*CPU budget exceeded: test_busy.py::test_busy used * CPU s*",
        "*CPU seconds per test, slowest 2 (budget: 0.4 CPU s per test)*",
        "*test_busy.py::test_busy  OVER BUDGET",
        "*test_busy.py::test_idle",
    ])
