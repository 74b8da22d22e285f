"""Where a new user stumbled in the CLI (issue 29's smaller items): ask without a text, short top-k
lists, answers with blank lines, the report announced twice."""

from __future__ import annotations

from typer.testing import CliRunner

from spanqa.interfaces.cli import app

runner = CliRunner()


def test_ask_without_a_text_mentions_the_index(tiny_bert_dir):
    result = runner.invoke(app, ["ask", str(tiny_bert_dir), "Who?"])
    assert result.exit_code == 1
    assert "--context" in result.output and "--index INDEX" in result.output and "spanqa index" in result.output


def test_ask_prints_answers_on_one_line_each_even_across_blank_lines(tiny_bert_dir):
    """Before: an answer spanning a blank line printed the blank line raw inside the ranked list."""
    text = "The keeper lit the lamp.\n\n\nShips passed safely.\tNobody drowned that winter."
    result = runner.invoke(app, ["ask", str(tiny_bert_dir), "Who lit it?", "--context", text, "--top-k", "3", "--max-answer-length", "30"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(line.strip() for line in lines) and "\t" not in result.stdout  # no blank line, no raw tab


def test_ask_says_why_fewer_answers_than_top_k_came_back(tiny_bert_dir):
    result = runner.invoke(app, ["ask", str(tiny_bert_dir), "Who?", "--context", "Emma Woodhouse.", "--top-k", "10"])
    assert result.exit_code == 0, result.output
    assert "of 10 answers: the other" in result.stdout and "overlap_threshold" in result.stdout


def test_evaluate_announces_its_report_once(tiny_bert_dir, sample_dev, tmp_path):
    out = tmp_path / "eval"
    args = ["evaluate", "--model", str(tiny_bert_dir), "--data", str(sample_dev), "--output-dir", str(out), "--max-length", "128", "--stride", "32"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("report.html") == 1, result.output


def test_verbose_shows_what_the_libraries_say_and_quiet_is_the_default(tiny_bert_dir):
    from spanqa.runtime.console import is_verbose, set_verbose

    args = ["ask", str(tiny_bert_dir), "Who lit it?", "--context", "The keeper lit the lamp."]
    try:
        quiet = runner.invoke(app, args)
        loud = runner.invoke(app, ["--verbose", *args])
        assert is_verbose()
    finally:
        set_verbose(False)
    assert quiet.exit_code == loud.exit_code == 0, (quiet.output, loud.output)
    assert "Loading weights" not in quiet.output and "Loading weights" in loud.output
    assert runner.invoke(app, args).exit_code == 0 and not is_verbose()  # each run starts quiet again
