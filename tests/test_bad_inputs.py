"""bench/bad_inputs.py: its case table, its classifier, and a few quick cases run as part of the normal suite.

The whole table (163 commands, a few minutes on two cores) runs with ``python bench/bad_inputs.py``;
the project has no slow-test marker, so only the quick sample below runs here.
"""

from __future__ import annotations

import bad_inputs  # bench/ is on sys.path (tests/conftest.py)
import pytest
from bad_inputs import CASES, CLEAN, EITHER, ERROR, OK, SAMPLE, SKIPPED, TRACEBACK, WRONG, Case, Run

COMMANDS = ("score", "evaluate", "data check", "data convert", "data split", "train", "ask", "predict", "export", "serve", "index", "report")


def test_the_table_has_60_cases_or_more_with_unique_names():
    names = [case.name for case in CASES]
    assert len(names) >= 60
    assert len(names) == len(set(names))
    assert all(case.expect in (ERROR, OK, EITHER) for case in CASES)


def test_every_command_meets_bad_input():
    for command in COMMANDS:
        assert any(case.argv.startswith(command) for case in CASES), command


def test_the_sample_exists_and_needs_no_model():
    by_name = {case.name: case for case in CASES}
    assert len(SAMPLE) == 5
    assert all(name in by_name and not by_name[name].needs_model for name in SAMPLE)


def _run(rc: int | None, stderr: str = "", stdout: str = "") -> Run:
    return Run(rc, stdout, stderr, 1.0)


@pytest.mark.parametrize(
    ("expect", "run", "check", "verdict"),
    [
        (ERROR, _run(1, "Traceback (most recent call last):\n  File ...\nValueError: boom\n"), None, TRACEBACK),
        (ERROR, _run(-11), None, TRACEBACK),
        (ERROR, _run(1, "INFO: loading\nerror: bad.json: field 'text': expected a string\n"), None, CLEAN),
        (ERROR, _run(1, "error: something is wrong\n"), None, WRONG),  # does not name bad.json
        (ERROR, _run(1, "error: bad.json: a\nerror: bad.json: b\n"), None, WRONG),  # two error lines
        (ERROR, _run(1, "predicting:   0%|   | 0/5error: bad.json: text\n"), None, WRONG),  # glued to a progress bar
        (ERROR, _run(1, "error: bad.json: text\n"), "replaced finished work: out.json", WRONG),
        (ERROR, _run(0, stdout="wrote 5 examples\n"), None, WRONG),  # exit 0 on garbage
        (ERROR, _run(None), None, WRONG),  # killed at the timeout
        (OK, _run(0, stdout="{}\n"), None, CLEAN),
        (OK, _run(0, stdout="{}\n"), "question(s) q4 missing from the output", WRONG),
        (OK, _run(1, "error: bad.json: text\n"), None, WRONG),
        (EITHER, _run(0, stdout="{}\n"), None, CLEAN),
        (EITHER, _run(1, "error: bad.json: text\n"), None, CLEAN),
    ],
)
def test_classify(expect, run, check, verdict):
    case = Case("test/case", "data convert bad.json out.json", expect, ("bad.json", "text|field"))
    assert bad_inputs.classify(case, run, check)[0] == verdict


def test_a_slow_answer_is_wrong():
    case = Case("test/slow", "ask my-modle q --context c", ERROR, ("my-modle",), max_seconds=10)
    assert bad_inputs.classify(case, Run(1, "", "error: my-modle: not found\n", 30.0), None)[0] == WRONG


@pytest.fixture(scope="module")
def data_ctx(tmp_path_factory):
    """The shared data fixtures only (no model, no training run): what the sample needs."""
    return bad_inputs.build_fixtures(tmp_path_factory.mktemp("bad-inputs"), model=False, training=False, log=lambda _: None)


@pytest.mark.parametrize("name", SAMPLE)
def test_quick_case_is_clean(name, data_ctx, tmp_path):
    case = next(case for case in CASES if case.name == name)
    outcome = bad_inputs.run_case(case, data_ctx, tmp_path)
    if outcome.verdict == SKIPPED:
        pytest.skip(outcome.reason)
    assert outcome.verdict == CLEAN, f"{outcome.verdict}: {outcome.reason}"
