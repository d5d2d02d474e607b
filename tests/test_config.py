"""Config loading: typed validation with full key paths, overrides, and help that lists every option."""
import dataclasses
from pathlib import Path

import pytest

from pipeline.cli import parser
from pipeline.config import DEFAULT_CONFIG, PipelineConfig, apply_override, load_config
from pipeline.errors import ConfigError, UserError
from pipeline.schema import describe


def _write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_default_config_loads_and_is_the_synthetic_scene():
    config = load_config(DEFAULT_CONFIG)
    assert config.source.kind == "synthetic"
    assert (config.source.synthetic.width, config.source.synthetic.height) == (640, 512)
    assert config.source.synthetic.frames == 300


def test_misspelled_key_names_full_path_and_suggests(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, "tracker:\n  max_missses: 3\n"))
    assert err.value.path == "tracker.max_missses"
    assert "did you mean 'tracker.max_misses'" in str(err.value)
    assert "allowed keys here" in str(err.value)


def test_wrong_type_and_bad_choice_name_path_and_allowed_values(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, "runner:\n  queue_size: many\n"))
    assert err.value.path == "runner.queue_size" and "expected int" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, "source:\n  kind: webcam\n"))
    assert err.value.path == "source.kind"
    for allowed in ("'auto'", "'synthetic'", "'video'", "'images'", "'mot'"):
        assert allowed in str(err.value)


def test_range_check_inside_nested_section_gets_full_path(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, "evaluation:\n  match_distance_px: -1\n"))
    assert err.value.path == "evaluation.match_distance_px"


def test_overrides_are_typed_and_validated():
    config = load_config(DEFAULT_CONFIG, ["runner.queue_size=3", "source.max_frames=10", "outputs.video=false"])
    assert (config.runner.queue_size, config.source.max_frames, config.outputs.video) == (3, 10, False)
    with pytest.raises(ConfigError):
        load_config(DEFAULT_CONFIG, ["runner.queue_size=0"])
    with pytest.raises(UserError, match="KEY=VALUE"):
        load_config(DEFAULT_CONFIG, ["runner.queue_size"])
    data = {"runner": 3}
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_override(data, "runner.queue_size=2")


def test_missing_and_invalid_config_files(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(_write(tmp_path, "source: [unclosed\n"))


def _leaf_keys(cls, prefix=""):
    keys = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            keys += _leaf_keys(type(default), f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def test_help_documents_every_option():
    text = parser().format_help()
    for key in _leaf_keys(PipelineConfig):
        assert f"  {key} (" in text, f"--help does not document {key}"
    assert all(line.split("): ", 1)[1].strip() for line in describe(PipelineConfig) if line.startswith("  ")), \
        "every option needs a help text"


def test_relative_weights_in_a_config_file_are_found_beside_it(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    config_file = folder / "mine.yaml"
    config_file.write_text("detector:\n  weights: ../weights/tiny\n")
    monkeypatch.chdir(folder)  # any working directory
    assert load_config(config_file).detector.weights == str(tmp_path / "weights" / "tiny")
    # a command-line override stays relative to the working directory, as paths typed in a shell do
    assert load_config(config_file, ["detector.weights=other.onnx"]).detector.weights == "other.onnx"


@pytest.mark.parametrize("name", sorted(p.name for p in DEFAULT_CONFIG.parent.glob("*.yaml")))
def test_shipped_pipeline_configs_validate_and_find_their_weights(name):
    config = load_config(DEFAULT_CONFIG.parent / name, ["source.path=video.mp4"])
    assert config.detector.weights is None or Path(config.detector.weights).exists()


@pytest.mark.parametrize("key, value", [("outputs.udp.address", "localhost"), ("outputs.udp.address", "host:99999"),
                                        ("outputs.mqtt.broker", "[::1]:port")])
def test_malformed_network_address_names_the_key_and_the_form(key, value):
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"{key}='{value}'"])
    assert err.value.path == key and f"expected HOST:PORT (e.g. 127.0.0.1:5005), got '{value}'" in err.value.message
    assert load_config(None, [f"{key}='[::1]:1883'"]) is not None
