import pytest

from recsys import docs
from recsys.config import model_names
from recsys.errors import ConfigError


def test_readme_models_table_is_generated_and_current():
    assert docs.main(["--check"]) == 0, "run `python -m recsys.docs` (make docs)"
    table = docs.models_table()
    assert [row.split("`")[1] for row in table.splitlines()[2:]] == model_names()


def test_replace_section_keeps_the_rest():
    text = "intro\n<!-- generated:x -->\nold\n<!-- /generated:x -->\noutro\n"
    assert docs.replace_section(text, "x", "new") == (
        "intro\n<!-- generated:x -->\nnew\n<!-- /generated:x -->\noutro\n")
    with pytest.raises(ConfigError, match="no generated section 'y'"):
        docs.replace_section(text, "y", "new")
