"""The shared config loader: types, nested sections, codecs, YAML files, dotted overrides, errors, help and dumps."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pytest
import yaml

from vjepa_ac.data.config import (
    ConfigError,
    add_config_arguments,
    apply_overrides,
    codec,
    collect_late_overrides,
    dump_yaml,
    from_dict,
    is_override,
    load,
    settings_help,
    split_overrides,
    to_dict,
)


@dataclass(frozen=True)
class Limits:
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"need low <= high, got {self.low} > {self.high}")


@dataclass(frozen=True)
class Camera:
    role: str
    fps: float | None = None


def _cameras_from_yaml(values: Any, where: str) -> tuple[Camera, ...]:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping role -> settings, got {values!r}")
    return tuple(from_dict(Camera, {**settings, "role": role}, f"{where}.{role}") for role, settings in values.items())


def _cameras_to_yaml(cameras: tuple[Camera, ...]) -> dict[str, dict[str, Any]]:
    return {camera.role: {"fps": camera.fps} for camera in cameras}


@dataclass
class Example:
    name: str = "arm"
    steps: int = 10
    rate: float = 2.5
    enabled: bool = True
    seed: int | None = None
    mode: Literal["joint", "cartesian"] = "joint"
    tags: list[str] = field(default_factory=list)
    pair: tuple[int, int] = (1, 2)
    home: tuple[float, ...] = (0.0, 0.5)
    gains: dict[str, float] = field(default_factory=dict)
    box: np.ndarray = field(default_factory=lambda: np.zeros(3))
    limits: Limits = field(default_factory=lambda: Limits(low=-2.0, high=2.0))
    """A section whose default differs from the class's own defaults."""
    bands: tuple[Limits, ...] = (Limits(),)
    cameras: tuple[Camera, ...] = field(default=(), metadata=codec(_cameras_from_yaml, _cameras_to_yaml))


def test_values_are_checked_and_converted_to_the_annotated_types():
    config = from_dict(Example, {
        "steps": 3.0, "rate": "1e-4", "seed": 7, "mode": "cartesian", "tags": ["a", "b"], "pair": [3, 4],
        "home": [1, 2, 3], "gains": {"p": 2}, "box": [0.1, 0.2, 0.3], "bands": [{"low": 0.5}, {"high": 3}],
        "cameras": {"left": {"fps": 15}},
    })
    assert config.steps == 3 and isinstance(config.steps, int)
    assert config.rate == 1e-4  # YAML 1.1 reads 1e-4 as a string
    assert config.seed == 7 and config.mode == "cartesian" and config.tags == ["a", "b"]
    assert config.pair == (3, 4) and config.home == (1.0, 2.0, 3.0)
    assert config.gains == {"p": 2.0} and isinstance(config.gains["p"], float)
    assert config.box.dtype == np.float64 and config.box.tolist() == [0.1, 0.2, 0.3]
    assert config.bands == (Limits(low=0.5), Limits(high=3.0))
    assert config.cameras == (Camera("left", 15.0),)


def test_a_nested_section_keeps_the_defaults_its_parent_gives_it():
    assert from_dict(Example, {"limits": {"high": 5}}).limits == Limits(low=-2.0, high=5.0)
    assert from_dict(Example, {}).limits == Limits(low=-2.0, high=2.0)


@pytest.mark.parametrize("values, message", [
    ({"stepz": 1}, "unknown config key 'stepz' (did you mean 'steps'?)"),
    ({"limits": {"hihg": 1}}, "unknown config key 'limits.hihg' (did you mean 'high'?)"),
    ({"limits": {"zzz": 1}}, "unknown config key 'limits.zzz' (known: high, low)"),
    ({"steps": "ten"}, "steps: expected an integer, got 'ten'"),
    ({"steps": 2.5}, "steps: expected an integer, got 2.5"),
    ({"enabled": "yes please"}, "enabled: expected true/false"),
    ({"seed": "x"}, "seed: expected an integer, got 'x' (or null)"),
    ({"mode": "torque"}, "mode: expected one of 'joint', 'cartesian', got 'torque'"),
    ({"pair": [1, 2, 3]}, "pair: expected 2 values, got 3"),
    ({"home": [0.0, "a"]}, r"home[1]: expected a number"),
    ({"tags": "a"}, "tags: expected a list"),
    ({"gains": [1]}, "gains: expected a mapping"),
    ({"box": 1.0}, "box: expected a list of numbers"),
    ({"limits": {"low": 3, "high": 1}}, "limits: need low <= high, got 3.0 > 1.0"),
    ({"limits": 3}, "limits: expected a mapping of Limits fields"),
    ({"bands": [{"low": 2, "high": 1}]}, r"bands[0]: need low <= high"),
    ({"cameras": {"left": {"fsp": 1}}}, "unknown config key 'cameras.left.fsp' (did you mean 'fps'?)"),
])
def test_mistakes_name_the_key(values, message):
    with pytest.raises(ConfigError) as raised:
        from_dict(Example, values)
    assert message in str(raised.value)


def test_a_yaml_file_then_settings_then_overrides(tmp_path):
    path = tmp_path / "example.yaml"
    path.write_text("steps: 4\nrate: 1.0\nlimits:\n  low: -1\n")
    config = load(Example, path, ["rate=3", "limits.high=9", "tags=[x, y]", "seed=null"],
                  settings={"steps": 5, "rate": 2.0, "seed": 1})
    assert (config.steps, config.rate, config.seed, config.tags) == (5, 3.0, None, ["x", "y"])
    assert config.limits == Limits(low=-1.0, high=9.0)
    assert to_dict(load(Example)) == to_dict(Example())


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.yaml"):
        load(Example, tmp_path / "absent.yaml")
    for text, message in (("- a\n- b\n", "the top level must be a mapping"), ("a: [1\n", "not valid YAML"),
                          ("stepz: 1\n", "did you mean 'steps'")):
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as raised:
            load(Example, path)
        assert str(raised.value).startswith(f"{path}: ") and message in str(raised.value)


@pytest.mark.parametrize("override, message", [
    ("steps", "is not of the form section.key=value"),
    ("=3", "is not of the form section.key=value"),
    ("steps.x=1", "'steps' is a value, not a section"),
    ("tags=[a", "the value is not valid YAML"),
    ("limits..low=1", "is not a dotted key"),
])
def test_bad_overrides_are_clear(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        load(Example, None, ["steps=2", override])


def test_overrides_parse_yaml_values_into_nested_sections():
    values = apply_overrides({"limits": None}, ["limits.low=-1", "gains={p: 1, d: 0.5}", "name='007'", "seed="])
    assert values == {"limits": {"low": -1}, "gains": {"p": 1, "d": 0.5}, "name": "007", "seed": None}


def test_a_dump_loads_back_to_the_same_config(tmp_path):
    config = from_dict(Example, {"seed": 3, "box": [1, 2, 3], "bands": [{"low": 0.25}],
                                 "cameras": {"wrist": {"fps": 30}}, "limits": {"high": 4}})
    text = dump_yaml(config)
    assert "box: [1.0, 2.0, 3.0]" in text and "cameras:\n  wrist:\n    fps: 30.0" in text
    path = tmp_path / "dumped.yaml"
    path.write_text(text)
    again = load(Example, path)
    assert to_dict(again) == to_dict(config) and yaml.safe_load(text) == to_dict(config)


def test_help_lists_every_setting_with_its_default():
    text = settings_help(Example, "a note")
    assert text.splitlines()[0] == "settings (Example; a --config YAML file of them, then KEY=VALUE overrides; a note):"
    for line in ("  steps=10", "  seed=null", "  limits.low=-2.0", "  limits.high=2.0", "  pair=[1, 2]",
                 "  bands=[{low: 0.0, high: 1.0}]", "  cameras={}", "  mode=joint"):
        assert line in text.splitlines()


def test_override_words_are_told_apart_from_paths():
    assert is_override("optim.lr=3e-4") and is_override("seed=1") and is_override("a_b.c2=")
    assert not is_override("episodes/") and not is_override("./x=1") and not is_override("runs/a=b")
    assert not is_override("--lr=3") and not is_override("1.5=x")
    assert split_overrides(["a/", "x.y=1", "b"]) == (["a/", "b"], ["x.y=1"])


def test_command_arguments_collect_late_overrides_and_show_settings_only_on_help(capsys):
    parser = argparse.ArgumentParser(prog="cmd")
    loaded = []
    add_config_arguments(parser, lambda: loaded.append(1) or Example)
    assert loaded == []  # the config class is looked up only when the help is shown
    args, extra = parser.parse_known_args(["a=1", "--print-config", "b.c=2", "--bogus"])
    assert collect_late_overrides(args, extra) == ["--bogus"]
    assert args.overrides == ["a=1", "b.c=2"] and args.print_config and args.config is None
    parser.print_help()
    assert "limits.high=2.0" in capsys.readouterr().out and loaded == [1]


def test_the_loader_loads_neither_torch_nor_h5py():
    script = ("import sys, vjepa_ac.data.config\n"
              "print(sorted(m for m in ('torch', 'h5py', 'mujoco') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_an_empty_section_keeps_the_defaults_its_parent_gives_it():
    assert from_dict(Example, {"limits": None}).limits == Limits(low=-2.0, high=2.0)
