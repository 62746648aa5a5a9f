import importlib

import pytest

from recsys import docs
from recsys.config import model_names
from recsys.errors import ConfigError


def test_readme_models_table_is_generated_and_current():
    assert docs.main(["--check"]) == 0, "run `python -m recsys.docs` (make docs)"
    table = docs.models_table()
    assert [row.split("`")[1] for row in table.splitlines()[2:]] == model_names()


def test_a_stale_readme_names_its_section_and_the_command_that_regenerates_it(tmp_path,
                                                                              capsys):  # fmt: skip
    readme = tmp_path / "R.md"
    readme.write_text(docs.README.read_text().replace("| `als` |", "| `alsx` |"))
    assert docs.main(["--check", "--readme", str(readme)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: {readme}'s generated models section is out of date: run `python -m recsys.docs "
        f"--readme {readme}`")  # fmt: skip


def test_replace_section_keeps_the_rest():
    text = "intro\n<!-- generated:x -->\nold\n<!-- /generated:x -->\noutro\n"
    assert docs.replace_section(text, "x", "new") == (
        "intro\n<!-- generated:x -->\nnew\n<!-- /generated:x -->\noutro\n")
    with pytest.raises(ConfigError, match="no generated section 'y'"):
        docs.replace_section(text, "y", "new")


def test_a_section_records_its_experiment_and_another_replaces_it_only_with_force(tmp_path):
    text = "intro\n<!-- generated:x -->\nold\n<!-- /generated:x -->\noutro\n"
    assert docs.section_experiment(text, "x") is None  # recorded nowhere: any may replace it
    text = docs.replace_section(text, "x", "| table |\n", experiment="bench-1")
    assert text == ("intro\n<!-- generated:x -->\n<!-- from MLflow experiment bench-1 -->\n"
                    "| table |\n<!-- /generated:x -->\noutro\n")  # fmt: skip
    assert docs.section_experiment(text, "x") == "bench-1"
    assert docs.section_experiment(docs.replace_section(text, "x", "new"), "x") is None
    readme = tmp_path / "README.md"
    readme.write_text(text)
    assert docs.read_readme(readme, "x", experiment="bench-1") == text
    assert docs.read_readme(readme, "x") == text  # no experiment: the docs' own sections
    with pytest.raises(ConfigError, match="its x section is of MLflow experiment 'bench-1', "
                                          "not 'trial': pass --force"):  # fmt: skip
        docs.read_readme(readme, "x", experiment="trial")
    assert docs.read_readme(readme, "x", experiment="trial", force=True) == text


@pytest.mark.parametrize("command", ["docs", "report", "literature", "cold_start"])
def test_a_readme_that_cannot_be_updated_is_one_line_before_any_work(command, tmp_path, capsys):
    module = importlib.import_module(f"recsys.{command}")
    arguments = {"docs": [], "report": ["--out", str(tmp_path / "out")],
                 "literature": ["protocols", "--tracking-uri", str(tmp_path / "none")],
                 "cold_start": ["--out", str(tmp_path / "out")]}[command]  # fmt: skip
    for readme, says in ((tmp_path / "missing.md", "cannot read --readme"),
                         (tmp_path / "plain.md", "no generated section")):  # fmt: skip
        if readme.name == "plain.md":
            readme.write_text("# a README without the section\n")
        assert module.main([*arguments, "--readme", str(readme)]) == 1
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and says in error[0], error
    assert not (tmp_path / "out").exists() and not (tmp_path / "none").exists()
