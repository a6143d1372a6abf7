"""CLI: bad input ends in one line and exit code 2 with nothing written; config flags round-trip."""

from __future__ import annotations

import pytest

from torch_cookbook import recipes


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "nosuchrecipe"], "unknown recipe 'nosuchrecipe'"),
        (["run", "batchnorm", "--lr", "abc"], "'abc' is not a number"),
        (["run", "batchnorm", "--lr", "-1"], "--lr -1.0: out of range, allowed (0, inf)"),
        (["run", "batchnorm", "--steps", "2.5"], "'2.5' is not an integer"),
        (["run", "batchnorm", "--momentum", "1"], "--momentum 1.0: out of range, allowed [0, 1)"),
        (["run", "batchnorm", "--amp", "fp8"], "--amp fp8: not one of the allowed values (off, bf16, fp16)"),
        (["run", "batchnorm", "--profile", "huge"], "invalid choice: 'huge'"),
        (["run", "batchnorm", "--stepz", "3"], "unknown option --stepz 3; did you mean --steps?"),
        (["run", "batchnorm", "--device", "cuda"], None),  # error only where CUDA is absent
        (["frobnicate"], "unknown command 'frobnicate'"),
        (["eval", "/nonexistent/run"], "run directory /nonexistent/run does not exist"),
        (["bench", "regression", "--jobs", "0"], "--jobs 0: must be at least 1"),
        (["bench", "regression", "--", "--stepz", "3"], "unknown option --stepz 3; did you mean --steps?"),
        (["bench", "regression", "--", "--lr", "-1"], "--lr -1.0: out of range, allowed (0, inf)"),
        (["bench", "regression", "--", "--seed", "3"], "--seed after --: bench sets it for every run itself"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(cli, tmp_path, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    import torch

    if expected is None:
        if torch.cuda.is_available():
            pytest.skip("CUDA is present here")
        expected = "no CUDA device is available here"
    code, out, err = cli(*args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert expected in lines[0]
    assert not (tmp_path / "runs").exists()


def test_every_config_field_is_a_flag_with_help(cli):
    code, out, _ = cli("run", "batchnorm", "--help")
    assert code == 0
    recipe = recipes.get("batchnorm")
    for f in __import__("dataclasses").fields(recipe.Config):
        assert f"--{f.name}" in out


def test_flags_override_profile_which_overrides_defaults():
    recipe = recipes.get("batchnorm")
    cfg = recipe.config("smoke", {"lr": 0.05})
    assert cfg.lr == 0.05
    assert cfg.steps == recipe.module.profiles["smoke"]["steps"]
    assert recipe.config("full").steps == recipe.Config().steps


def test_every_recipe_honours_the_contract():
    for r in recipes.all_recipes():
        assert set(r.module.profiles) == {"smoke", "quick", "full"}, r.name
        for profile in ("smoke", "quick", "full"):
            r.config(profile)  # every profile is a valid config
        assert r.targets and r.seed_question.startswith("Q"), r.name
        for f in __import__("dataclasses").fields(r.Config):
            assert f.metadata.get("help"), f"{r.name}.{f.name} has no help text"


def test_list_shows_every_recipe(cli):
    code, out, _ = cli("list")
    assert code == 0
    for name in recipes.names():
        assert name in out


@pytest.mark.parametrize("values, expected", [([], "give at least one of"), (["adam", "adam"], "a value is repeated")])
def test_list_choices_are_a_selection(values, expected):
    from torch_cookbook.errors import ConfigError

    with pytest.raises(ConfigError, match=expected):
        recipes.get("optimizers").config("smoke", {"optimizers": values})


def test_version_names_the_package_and_its_commit(cli):
    from torch_cookbook import __version__
    from torch_cookbook.engine.runs import code_version

    code, out, _ = cli("--version")
    code_now = code_version()
    assert code == 0
    assert out.startswith(f"torch-cookbook {__version__} (commit {code_now['commit']}")
    assert ("dirty" in out) == bool(code_now["dirty"])
