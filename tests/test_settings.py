"""Settings have one home: the README's table is generated from siamatch/settings.py."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from siamatch.settings import Settings, markdown_table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_configuration_table_matches_the_code() -> None:
    readme = README.read_text()
    assert markdown_table() in readme, (
        "README's configuration table is stale: paste the output of "
        "`python -m siamatch.settings` into README.md"
    )


def test_every_setting_has_an_env_var_a_flag_and_help() -> None:
    for f in Settings.fields():
        assert f.metadata["env"] == "SIAMATCH_" + f.name.upper()
        assert f.metadata["flag"] == "--" + f.name.replace("_", "-")
        assert f.metadata["help"].strip()


def test_env_overrides_default_and_flag_overrides_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIAMATCH_MAX_BATCH_SIZE", "7")
    assert Settings.from_env().max_batch_size == 7
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser, "worker")
    assert Settings.from_args(parser.parse_args([])).max_batch_size == 7
    assert Settings.from_args(parser.parse_args(["--max-batch-size", "3"])).max_batch_size == 3


def test_bad_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIAMATCH_WORKERS", "many")
    with pytest.raises(ValueError, match="SIAMATCH_WORKERS"):
        Settings.from_env()
