"""The README's generated sections: nothing in them is typed by hand.

    python -m recsys.docs           # rewrite the sections that come from code and config
    python -m recsys.docs --check   # exit 1, naming the section, if README.md is out of date

A section sits between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``. ``models``
(every file of ``conf/model/``: what it is, its module, its settings) comes from here;
``results`` is written by ``python -m recsys.report --readme README.md`` from MLflow runs.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

from omegaconf import OmegaConf

from recsys.config import CONF_DIR, compose_config, model_names
from recsys.errors import ConfigError, RecsysError
from recsys.files import atomic_write_text

README = CONF_DIR.parent / "README.md"
EXPERIMENT_LINE = "<!-- from MLflow experiment {} -->"  # a section's first line: its source


def _section(name: str) -> tuple[str, re.Pattern]:
    begin, end = f"<!-- generated:{name} -->", f"<!-- /generated:{name} -->"
    return begin, re.compile(re.escape(begin) + r"\n?(.*?)" + re.escape(end), re.DOTALL)


def replace_section(text: str, name: str, body: str, experiment: str | None = None) -> str:
    """``text`` with the generated section ``name`` holding ``body``, its first line recording
    the MLflow ``experiment`` it was made from, where given (an HTML comment)."""
    begin, pattern = _section(name)
    if not pattern.search(text):
        raise ConfigError(f"no generated section {name!r} ({begin} ... <!-- /generated:{name} "
                          f"-->) in the README")  # fmt: skip
    if experiment is not None:
        body = f"{EXPERIMENT_LINE.format(experiment)}\n{body.strip()}"
    return pattern.sub(lambda _: f"{begin}\n{body.strip()}\n<!-- /generated:{name} -->", text,
                       count=1)  # fmt: skip


def section_experiment(text: str, name: str) -> str | None:
    """The MLflow experiment the generated section ``name`` of ``text`` records as its source
    (``replace_section``), or ``None`` where it records none."""
    found = _section(name)[1].search(text)
    first = found.group(1).split("\n", 1)[0] if found else ""
    prefix, suffix = EXPERIMENT_LINE.split("{}")
    if first.startswith(prefix) and first.endswith(suffix):
        return first[len(prefix) : -len(suffix)]
    return None


def read_readme(path: Path, *sections: str, experiment: str | None = None,
                force: bool = False) -> str:  # fmt: skip
    """The README a command updates, read and its generated ``sections`` found, before any
    work (``ConfigError`` in one line otherwise). With ``experiment``, a section made from
    another MLflow experiment is refused too, unless ``force``: the README's results are one
    benchmark's, and a trial experiment must not replace them unasked."""
    try:
        text = Path(path).read_text()
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        wanted = f" with a generated {' and '.join(sections)} section" if sections else ""
        raise ConfigError(f"cannot read --readme {path} ({reason}): give a README"
                          f"{wanted}") from None  # fmt: skip
    for name in sections:
        replace_section(text, name, "")  # ConfigError if it lacks the section
        recorded = section_experiment(text, name)
        if experiment is not None and recorded not in (None, experiment) and not force:
            raise ConfigError(f"--readme {path}: its {name} section is of MLflow experiment "
                              f"{recorded!r}, not {experiment!r}: pass --force to replace it, "
                              f"or leave out --readme")  # fmt: skip
    return text


def models_table() -> str:
    """One row per file of ``conf/model/``: name, what (the module's summary line), module,
    and its settings (for torch models, the trainer settings it changes from the default)."""
    trainer_default = OmegaConf.load(CONF_DIR / "trainer" / "default.yaml")
    rows = ["| model | what | module | settings (`conf/model/<model>.yaml`) |",
            "| --- | --- | --- | --- |"]  # fmt: skip
    for name in model_names():
        node = compose_config([f"model={name}"]).model
        module = importlib.import_module(node._target_.rsplit(".", 1)[0])
        summary = (module.__doc__ or "").strip().splitlines()[0].replace("``", "`")
        settings = {k: v for k, v in OmegaConf.to_container(node).items()
                    if k not in ("_target_", "trainer")}  # fmt: skip
        text = ", ".join(f"{k}={_value(v)}" for k, v in settings.items())
        if "trainer" in node:
            changed = {k: v for k, v in node.trainer.items() if trainer_default.get(k) != v}
            text += "; trainer: " + (", ".join(f"{k}={_value(v)}" for k, v in changed.items())
                                     or "the default")  # fmt: skip
        path = module.__name__.replace(".", "/") + ".py"
        rows.append(f"| `{name}` | {summary} | `{path}` | {text or '—'} |")
    return "\n".join(rows)


def _value(value) -> str:
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if is_model_group(value):  # an ensemble's members: each is its own YAML
        return "+".join(f"`{name}`" for name in value)
    return str(value).replace(" ", "")


def is_model_group(value) -> bool:
    """A mapping of configured models (each a node with a ``_target_``): an ensemble's members."""
    return (isinstance(value, dict) and bool(value)
            and all(isinstance(v, dict) and "_target_" in v for v in value.values()))  # fmt: skip


SECTIONS = {"models": models_table}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys.docs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    args = parser.parse_args(argv)
    try:
        text = read_readme(args.readme, *SECTIONS)
        updated = text
        for name, make in SECTIONS.items():
            updated = replace_section(updated, name, make())
    except RecsysError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.check:
        stale = [name for name, make in SECTIONS.items()
                 if replace_section(text, name, make()) != text]  # fmt: skip
        if stale:
            own = Path(args.readme).resolve() == README.resolve()
            given = "" if own else f" --readme {args.readme}"
            sections = "section is" if len(stale) == 1 else "sections are"
            print(f"error: {args.readme}'s generated {', '.join(stale)} {sections} out of date: "
                  f"run `python -m recsys.docs{given}`", file=sys.stderr)
            return 1
        return 0
    if updated != text:
        atomic_write_text(args.readme, updated)
    print(f"{args.readme}: generated sections {'updated' if updated != text else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
