"""The one configuration style of every command: a dataclass tree with working defaults, read from a YAML file of its
fields, then changed by dotted `key=value` overrides (`optim.lr=3e-4`, `safety.max_translation=0.05`).

It sits at the bottom of the package tree (it imports NumPy and PyYAML alone), so that every layer may use it, the
robot-side bridge process included, which must load neither torch nor h5py.

- `from_dict(cls, values)` builds `cls` from nested mappings, checking each value against its field's annotation:
  nested dataclasses, `Optional` / unions, `list`, `tuple` (fixed length or `...`, also of dataclasses), `dict`,
  `Literal`, `bool`, `int`, `float` (YAML 1.1 reads `1e-4` as a string; it is accepted as the number it is), `str`
  and `numpy.ndarray` (float64). An unknown key is an error that names it and the closest known key, so a typo never
  silently keeps a default; a value the dataclass itself rejects (`__post_init__`) is reported with its key.
- A field whose YAML form differs from its Python form declares both directions with `codec(decode, encode)` in its
  metadata (e.g. the bridge's cameras: a mapping role -> settings in YAML, a tuple of `CameraConfig` in Python).
- `to_dict` / `dump_yaml` write a config back in the form `from_dict` reads, so a printed config (`--print-config`)
  can be saved and loaded again.
- `load(cls, path, overrides, settings)` is the whole pipeline: the file (or the defaults), then typed `settings`
  {dotted key: value} (a command's options), then the `KEY=VALUE` overrides, then `from_dict`; `build` is the same
  for values already read (e.g. after a command has resolved paths relative to the file).
- `settings_help(cls)` lists every dotted key with its default, for a command's `--help`; `add_config_arguments`
  gives a command the `--config FILE`, `KEY=VALUE` and `--print-config` arguments of this style, and
  `collect_late_overrides` picks up `KEY=VALUE` words that follow an option.

A missing file raises FileNotFoundError; every other mistake raises `ConfigError` (a `ValueError`), whose message
names the file and the dotted key.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml

T = TypeVar("T")

CODEC_KEY = "config_codec"
"""Field metadata key of a `Codec`."""


class ConfigError(ValueError):
    """A configuration mistake: an unknown key, a value of the wrong type or one the config rejects."""


@dataclasses.dataclass(frozen=True)
class Codec:
    """How one field is written in YAML when that differs from its Python value."""

    decode: Callable[[Any, str], Any]
    """(YAML value, dotted key for messages) -> field value; raises ConfigError naming the key."""
    encode: Callable[[Any], Any]
    """Field value -> YAML value (what `decode` reads back)."""


def codec(decode: Callable[[Any, str], Any], encode: Callable[[Any], Any]) -> dict[str, Codec]:
    """Field metadata declaring a field's YAML form: `field(default=..., metadata=codec(decode, encode))`."""
    return {CODEC_KEY: Codec(decode, encode)}


# ------------------------------------------------------------------------------------------------ reading values
def coerce(value: Any, annotation: Any, where: str) -> Any:
    """`value` (as YAML gives it) checked against, and gently converted to, `annotation`; `where` names it."""
    if annotation is Any or annotation is object:
        return value
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, {} if value is None else value, where)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc).removeprefix(f"{where}: "))
        nullable = " (or null)" if type(None) in args else ""
        if len(errors) == 1:
            raise ConfigError(f"{where}: {errors[0]}{nullable}")
        raise ConfigError(f"{where}: {value!r} fits none of the accepted types{nullable}: {'; '.join(errors)}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (list, tuple, Sequence, typing.Sequence) or annotation in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        items = [coerce(v, args[0] if args else Any, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list or annotation is list else tuple(items)
    if origin in (dict, Mapping, typing.Mapping) or annotation is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_type, value_type = args if args else (Any, Any)
        return {coerce(k, key_type, where): coerce(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if annotation is np.ndarray:
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a list of numbers, got {value!r}") from None
        if array.ndim == 0:
            raise ConfigError(f"{where}: expected a list of numbers, got {value!r}")
        return array
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(annotation, type) and not isinstance(value, annotation):
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")
    return value


def unknown_key_error(key: str, known: Sequence[str], where: str) -> ConfigError:
    """The error for `key` in section `where` (dotted; "" = top level) that is none of `known`."""
    path = f"{where}.{key}" if where else str(key)
    close = difflib.get_close_matches(str(key), sorted(known), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}"
    return ConfigError(f"unknown config key {path!r} ({hint})")


def _init_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def from_dict(cls: type[T], values: Mapping[str, Any], where: str = "", base: T | None = None) -> T:
    """`cls` from a mapping of (some of) its fields; missing fields keep those of `base`, else the defaults (a
    nested section keeps the defaults its parent gives it, e.g. a `default_factory`'s). `where` is the dotted key of
    `values` inside the whole config ("" at the top), for messages."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping of {cls.__name__} fields, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in _init_fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise unknown_key_error(key, list(fields), where)
        path = f"{where}.{key}" if where else key
        f = fields[key]
        field_codec = f.metadata.get(CODEC_KEY)
        if field_codec:
            kwargs[key] = field_codec.decode(value, path)
            continue
        default = getattr(base, key) if base is not None else _default(f)
        if (value is None or isinstance(value, Mapping)) and dataclasses.is_dataclass(default) \
                and not isinstance(default, type):  # an empty section (`watchdog:`) keeps its defaults
            kwargs[key] = from_dict(type(default), value or {}, path, base=default)
        else:
            kwargs[key] = coerce(value, hints[key], path)
    try:
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except TypeError as exc:  # a required field without a value
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None
    except ValueError as exc:  # the dataclass rejects a value (its __post_init__)
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where}: {exc}" if where else str(exc)) from None


# ------------------------------------------------------------------------------------------------ writing values
def to_plain(value: Any) -> Any:
    """`value` as YAML-safe plain data (dataclasses as `to_dict`, tuples and arrays as lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, Mapping):
        return {to_plain(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """A config as nested plain data, in the form `from_dict` reads."""
    out = {}
    for f in _init_fields(type(config)):
        value = getattr(config, f.name)
        field_codec = f.metadata.get(CODEC_KEY)
        out[f.name] = to_plain(field_codec.encode(value) if field_codec else value)
    return out


class _ConfigDumper(yaml.SafeDumper):
    """Sections as indented blocks, lists of numbers or words on one line (`home_q: [0.0, -0.63, ...]`)."""


_ConfigDumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence(
        "tag:yaml.org,2002:seq", data, flow_style=all(not isinstance(v, (dict, list)) for v in data)))


def dump_yaml(config: Any) -> str:
    """A config (or a mapping of configs) as YAML, fields in declaration order; a config's is loadable by `load`."""
    return yaml.dump(to_plain(config), Dumper=_ConfigDumper, sort_keys=False, width=120)


# ------------------------------------------------------------------------------------------------ files, overrides
def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML config file holds (an empty file is an empty mapping)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(2, "no such config file (YAML)", str(path))
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings, got {type(loaded).__name__}")
    return loaded or {}


def set_value(values: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Set dotted `key` (e.g. "optim.lr") to `value` in nested `values`, creating sections; returns `values`."""
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"{key!r} is not a dotted key like section.key")
    node = values
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"{key}: {'.'.join(parts[:depth + 1])!r} is a value, not a section")
        node = child
    node[parts[-1]] = value
    return values


def parse_override(item: str) -> tuple[str, Any]:
    """("section.key", value) of one `section.key=value` override; the value is read as YAML (`[1, 2]`, `null`)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: the value is not valid YAML ({exc})") from None
    return key.strip(), value


def apply_overrides(values: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply `section.key=value` overrides to nested `values`, in place, in order; returns `values`."""
    for item in overrides:
        set_value(values, *parse_override(item))
    return values


def build(cls: type[T], values: dict[str, Any], overrides: Sequence[str] = (),
          settings: Mapping[str, Any] | None = None, source: str | Path | None = None) -> T:
    """`cls` from nested `values` (e.g. a file's), then typed `settings` {dotted key: value} (e.g. from command-line
    flags), then `section.key=value` `overrides`; `source` (the file) prefixes every error message."""
    try:
        for key, value in (settings or {}).items():
            set_value(values, key, value)
        apply_overrides(values, overrides)
        return from_dict(cls, values)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}" if source is not None else str(exc)) from None


def load(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = (),
         settings: Mapping[str, Any] | None = None) -> T:
    """`cls` from a YAML file of its fields (None: the defaults), then `settings`, then `overrides` (see `build`).
    Errors name the file and the key."""
    return build(cls, read_yaml(path) if path is not None else {}, overrides, settings, source=path)


def is_override(text: str) -> bool:
    """Whether a command-line word is a `section.key=value` override rather than a path (a path with "=" in its
    first part can be written ./name=...)."""
    key, sep, _ = text.partition("=")
    return bool(sep) and all(part.isidentifier() for part in key.split("."))


# ------------------------------------------------------------------------------------------------ help
def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of nested plain data (non-empty mappings expanded)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def shown(value: Any) -> str:
    """`value` as one line of YAML, as it is written in an override (`panda`, `[0.1, 0.2]`, `null`)."""
    return yaml.safe_dump([to_plain(value)], default_flow_style=True, sort_keys=False, width=1_000_000).strip()[1:-1]


def settings_help(cls: type, note: str = "") -> str:
    """Help text listing every `KEY=VALUE` setting of `cls` with its default (`note` says more about them)."""
    lines = [f"settings ({cls.__name__}; a --config YAML file of them, then KEY=VALUE overrides"
             f"{'; ' + note if note else ''}):"]
    lines += [f"  {key}={shown(value)}" for key, value in flatten(to_dict(cls())).items()]
    return "\n".join(lines)


def add_config_arguments(parser: argparse.ArgumentParser, config_class: Callable[[], type], *,
                         overrides: bool = True, note: str = "") -> None:
    """Give a command this style's arguments: `--config FILE` (YAML of the config's fields), `--print-config` (show
    the resolved config as YAML and exit) and, with `overrides`, trailing `KEY=VALUE` words (a command whose other
    positional arguments take several words collects them itself and separates them with `split_overrides`).

    `config_class` returns the config dataclass; it is called only when the help is shown, whose epilog then lists
    every setting with its default, so a command's config may live in a module that is slow to import."""
    parser.add_argument("--config", type=Path, metavar="YAML", default=None,
                        help="YAML file of settings (see the list below); KEY=VALUE words override it")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved settings as YAML (loadable with --config) and exit")
    if overrides:
        parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                            help="dotted setting overrides with YAML values, e.g. link.host=10.0.0.2")
        parser.set_defaults(override_words=OVERRIDE_WORDS_DEST)
    add_settings_help(parser, config_class, note)


def add_settings_help(parser: argparse.ArgumentParser, config_class: Callable[[], type], note: str = "") -> None:
    """End `parser`'s help with `settings_help` of the class `config_class` returns (called when help is shown)."""
    format_help = parser.format_help

    def format_help_with_settings() -> str:
        return f"{format_help()}\n{settings_help(config_class(), note)}\n"

    parser.format_help = format_help_with_settings  # type: ignore[method-assign]


OVERRIDE_WORDS_DEST = "overrides"
"""The argparse dest of a command's `KEY=VALUE` words; a command names its own with `set_defaults(override_words=)`."""


def collect_late_overrides(args: argparse.Namespace, extra: Sequence[str]) -> list[str]:
    """Add the `KEY=VALUE` words that argparse left over because they came after an option (`cmd --out X a.b=1`)
    to the command's list named by `args.override_words`; returns the words that are still unrecognised."""
    dest = getattr(args, "override_words", None)
    late = [word for word in extra if is_override(word)] if dest else []
    if late:
        getattr(args, dest).extend(late)
    return [word for word in extra if word not in late]


def split_overrides(words: Sequence[str]) -> tuple[list[str], list[str]]:
    """(other words, `KEY=VALUE` overrides) of a command line's positional words (see `is_override`)."""
    others = [word for word in words if not is_override(word)]
    return others, [word for word in words if is_override(word)]
