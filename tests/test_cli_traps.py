"""The small traps of issue 17 item 6, tried as a new user would: each ends in one clear line (or
works), and every CLI option says what it does and what happens without it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

import routekit
from routekit import registry
from routekit.cli import _parser, main

REPO = Path(__file__).resolve().parents[1]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("routekit: error:") and "Traceback" not in err, err
    return lines[0]


def test_route_with_a_bad_random_seed_is_one_line(capsys):
    assert main(["route", "--router", "random:abc", "hi"]) == 2
    assert "seed must be an integer, got 'abc'" in _one_error_line(capsys)


@pytest.mark.parametrize("action", ["verify", "seal"])
@pytest.mark.parametrize("name", ["random", "random:7"])
def test_artifacts_verify_random_says_it_has_no_artifact(capsys, action, name):
    assert main(["artifacts", action, name]) == 2
    line = _one_error_line(capsys)
    assert f"{name!r} is the built-in random router" in line and f"no artifact to {action}" in line, line
    assert "Unknown router" not in line


def test_verify_a_relative_artifacts_path_from_another_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # not the checkout: artifacts/mf is found in the shipped artifacts folder
    assert main(["artifacts", "verify", "artifacts/mf"]) == 0
    assert capsys.readouterr().out.startswith("OK ")
    assert routekit.load("artifacts/linear").kind == "linear"


def test_a_relative_path_here_wins_over_the_shipped_folder(tmp_path, monkeypatch):
    from routekit import artifact

    mine = tmp_path / "artifacts" / "mf"
    mine.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert artifact.resolve("artifacts/mf") == Path("artifacts/mf")
    with pytest.raises(routekit.UnknownArtifactError, match=r"'nowhere/mf': not a shipped artifact"):
        artifact.resolve("nowhere/mf")


def test_load_docstring_names_every_built_in_kind_and_shipped_artifact():
    from routekit import artifact

    for name in [*registry.BUILTIN, *artifact.shipped()]:
        assert f"``{name}``" in routekit.load.__doc__, name


def test_docs_links_resolve():
    for md in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", md.read_text()):
            if not re.match(r"[a-z]+:", target):
                assert (md.parent / target).exists(), f"{md.name} links to {target}, which does not exist"


# -- help texts --------------------------------------------------------------------------------------
def _options(parser: argparse.ArgumentParser, path: str):
    grouped = {id(a) for g in parser._mutually_exclusive_groups if g.required for a in g._group_actions}
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield from _options(sub, f"{path} {name}")
        elif not isinstance(a, (argparse._HelpAction, argparse._VersionAction)):
            yield parser, path, a, a.required or id(a) in grouped


#: how a help text states its default ("(default: x)", "x (default)", "default 1e-5", "defaults to");
#: the bare word is not enough (``--router`` help names the router called ``default``)
_STATES_DEFAULT = re.compile(r"\bdefault(?::| is| to|s to| [^'\"\s,)]|, |\))")


def help_problems(parser: argparse.ArgumentParser) -> list[str]:
    """Options without help, options taking a value whose help (as printed) says no default, and
    ``(default: None)``."""
    out = []
    for p, path, a, required in _options(parser, parser.prog):
        name = "/".join(a.option_strings) or a.dest
        text = p._get_formatter()._expand_help(a) if a.help else ""
        if not text.strip():
            out.append(f"{path} {name}: no help")
        elif a.option_strings and not required and a.nargs != 0 and not _STATES_DEFAULT.search(text.lower()):
            out.append(f"{path} {name}: the help does not say the default")
        elif "default: None" in text:
            out.append(f"{path} {name}: '(default: None)'")
    return out


def test_every_routekit_option_has_help_and_a_default():
    assert help_problems(_parser()) == []


def test_help_shows_defaults_the_issue_named(capsys):
    for argv, needles in ((["calibrate", "--help"], ["--field FIELD", "(default: prompt)"]),
                          (["serve", "--help"], ["(default: 127.0.0.1)", "(default: 6060)"])):
        with pytest.raises(SystemExit):
            main(argv)
        out = " ".join(capsys.readouterr().out.split())
        for needle in needles:
            assert needle in out, (argv, needle)


def _export_cli():
    pytest.importorskip("tqdm", reason="needs the export extra: pip install 'routekit[export]'")
    from routekit_export import cli

    return cli


def test_every_routekit_export_option_has_help_and_a_default():
    assert help_problems(_export_cli()._parser()) == []


def test_routekit_export_commands_come_from_one_table():
    cli = _export_cli()
    commands = cli._commands()
    sub = next(a for a in cli._parser(commands)._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == [c.name for c in commands]  # one Command record per command


def test_train_linear_name_has_no_none_default(capsys):
    with pytest.raises(SystemExit):
        _export_cli().main(["train-linear", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--name NAME artifact name in the manifest (default: folder name)" in out
    assert "default: None" not in out


def test_train_causal_tiny_is_tiny(tmp_path, monkeypatch):
    cli = _export_cli()
    from routekit_export import causal

    seen = {}

    def fake_build(out, *, cfg, **kw):  # the steps train-causal --tiny asks for, without training
        seen["cfg"] = cfg
        return {"final": {}, "labels": {}}

    monkeypatch.setattr(causal, "build_causal", fake_build)
    cli.main(["train-causal", "--tiny", "--data", str(tmp_path), "--out", str(tmp_path / "c")])
    assert seen["cfg"].max_steps == causal.TINY_STEPS <= 20


@pytest.mark.parametrize("limit", [3000, 101])
def test_training_limit_is_exact(data_root, limit):
    pytest.importorskip("tqdm", reason="needs the export extra: pip install 'routekit[export]'")
    from routekit_export import data as D

    assert len(D.load_training(data_root, limit=limit)) == limit
