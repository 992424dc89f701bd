"""A hypernet run's inputs: the validated TrainConfig, from Python, the CLI and a saved config.json."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from service.errors import InvalidParameter
from service.training.hypernet_inputs import TrainConfig


def config(**overrides) -> TrainConfig:
    return TrainConfig(**{"base": "base.safetensors", "out": "run", **overrides})


@pytest.mark.parametrize(("field", "value", "message"), [
    ("width_sampling", "sandwhich", "width_sampling = 'sandwhich': expected one of uniform, sandwich"),
    ("scope", "middle", "scope = 'middle'"),
    ("precision", "fp16", "precision = 'fp16'"),
    ("dataset", "mnist", "dataset = 'mnist'"),
    ("widths_train", (40, 20), "widths_train = [40, 20]: need 1 <= MIN <= MAX <= 64"),
    ("widths_train", (8, 65), "widths_train = [8, 65]"),
    ("kd_temperature", 0.0, "kd_temperature = 0.0: must be > 0"),
    ("batch", 0, "batch = 0: must be >= 1"),
])
def test_a_bad_value_is_refused_with_its_key_name(field, value, message):
    with pytest.raises(InvalidParameter) as info:
        config(**{field: value})
    assert message in str(info.value)


def test_a_config_read_back_from_json_equals_the_one_written():
    cfg = config(widths_train=(8, 64), width_sampling="sandwich", val_widths=[8, 64])
    again = TrainConfig(**json.loads(json.dumps(asdict(cfg))))  # what ship.load_run does
    assert again == cfg and again.widths_train == (8, 64)


def test_the_cli_reports_a_bad_width_range_without_a_traceback(tmp_path, capsys):
    import service.cli

    base = tmp_path / "base.safetensors"
    base.write_bytes(b"")  # only its existence is checked before the values
    code = service.cli.main(["train", "hypernet", "--base", str(base), "--out", str(tmp_path / "run"),
                             "--widths-train", "40", "20", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: invalid_parameter:") and "widths_train = [40, 20]" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()
