"""Settings: layers, one-line errors, and the example config listing every setting."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from cli_support import run_cli

from digest.config import Settings, iter_settings, load_settings
from digest.errors import ConfigError

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "config" / "digest.example.toml"


def test_defaults_need_no_file_or_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.database.url == "sqlite:///var/digest.db"
    assert settings.sources.enabled == ["sample"]
    assert settings.sources.arxiv_rss.min_interval >= 3


def test_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "digest.toml"
    path.write_text('[http]\ntimeout = 12\nretries = 1\n[sources]\nenabled = ["huggingface"]\n')
    settings = load_settings(path, environ={"DIGEST_HTTP__TIMEOUT": "7.5"})
    assert settings.http.timeout == 7.5  # the environment wins over the file
    assert settings.http.retries == 1  # the file wins over the default
    assert settings.sources.enabled == ["huggingface"]


def test_environment_lists_take_commas_or_json() -> None:
    commas = load_settings(environ={"DIGEST_SOURCES__ARXIV_RSS__CATEGORIES": "cs.LG, hep-th"})
    assert commas.sources.arxiv_rss.categories == ["cs.LG", "hep-th"]
    as_json = load_settings(environ={"DIGEST_SOURCES__ENABLED": '["sample", "arxiv_api"]'})
    assert as_json.sources.enabled == ["sample", "arxiv_api"]


def test_config_env_var_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text('[database]\nurl = "sqlite:///elsewhere.db"\n')
    settings = load_settings(environ={"DIGEST_CONFIG": str(path)})
    assert settings.database.url == "sqlite:///elsewhere.db"


@pytest.mark.parametrize(
    ("toml", "environ", "expected"),
    [
        ("[http]\ntimeout = 'soon'\n", {}, "bad setting http.timeout: input should be a valid"),
        ("[http]\ntimout = 3\n", {}, "unknown setting http.timout [from "),
        ("[sources]\nenabled = ['rss']\n", {}, "bad setting sources.enabled: input should be"),
        ("", {"DIGEST_HTTP__RETRIES": "-1"}, "bad setting http.retries: input should be greater"),
        ("", {"DIGEST_SOURCES__ARXIV_API__MIN_INTERVAL": "1"}, "arxiv_api.min_interval"),
        ("", {"DIGEST_NOPE": "1"}, "unknown setting nope [from DIGEST_NOPE]"),
        ("[ranking]\nrelevance_floor = 1.0\n", {}, "replaced by ranking.relative_cut"),
        ("[http\n", {}, "not valid TOML"),
    ],
)
def test_a_wrong_setting_is_one_line_naming_the_key(
    tmp_path: Path, toml: str, environ: dict[str, str], expected: str
) -> None:
    path = tmp_path / "digest.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=environ)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


def test_origin_is_named(tmp_path: Path) -> None:
    path = tmp_path / "digest.toml"
    path.write_text("[http]\ntimeout = 'soon'\n")
    with pytest.raises(ConfigError, match=r"\[from .*digest\.toml\]"):
        load_settings(path, environ={})
    with pytest.raises(ConfigError, match=r"\[from DIGEST_HTTP__TIMEOUT\]"):
        load_settings(environ={"DIGEST_HTTP__TIMEOUT": "soon"})


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml", environ={})


def test_cli_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "papers", DIGEST_HTTP__TIMEOUT="soon")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: bad setting http.timeout:")
    assert "DIGEST_HTTP__TIMEOUT" in lines[0]


def _flatten(data: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_example_config_lists_every_setting_with_its_default() -> None:
    example = _flatten(tomllib.loads(EXAMPLE.read_text()))
    defaults = Settings()
    for key, _info in iter_settings():
        assert key in example, f"{key} is missing from config/digest.example.toml"
        value: object = defaults
        for part in key.split("."):
            value = getattr(value, part)
        if isinstance(value, Path):
            value = str(value)
        assert example[key] == value, f"{key}: example says {example[key]!r}, default is {value!r}"
    known = {key for key, _ in iter_settings()}
    assert not set(example) - known, f"example names unknown settings: {set(example) - known}"


def test_example_config_comments_every_setting() -> None:
    lines = EXAMPLE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "=" in line and not line.startswith(("#", "[")):
            assert lines[number - 1].startswith("#"), f"no comment above: {line}"


def test_example_config_loads_as_is() -> None:
    assert load_settings(EXAMPLE, environ={}) == Settings()
