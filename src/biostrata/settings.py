"""One base for every experiment's settings: a dataclass read from YAML, overridden on the command
line, checked, and saved beside the results.

A subclass is a ``@dataclass`` whose fields are the options, with defaults (the papers' where there
are any). It gets:
- ``from_dict`` / ``from_yaml``: unknown keys are errors; every value is checked against its field's
  type and converted where YAML reads it otherwise (``lr: 1e-3`` is a string to PyYAML; a single
  number for a list field becomes a one-item list); a wrong value is an error that names the key,
  the file and what is expected;
- ``to_yaml`` (atomic), ``replace``;
- ``from_args(args)``: the settings of ``--config FILE`` overridden by the command-line options, one per
  field, that :func:`biostrata.cli.options.add_settings` makes (``--batch-size`` for ``batch_size``; booleans
  as ``--x / --no-x``). A field's help text is its ``metadata["help"]``; the default is added to it;
- its defaults from the function it configures (``@defaults_from("biostrata.module:function")``): a
  field declared without a default takes that of the function's parameter of the same name, read from
  the function's signature in its source file (no import: the settings of a torch function load no torch);
- ``check_resume``: a run resumes in a folder only with the settings its saved outputs were made with,
  but for the *operational* fields (``field_help(..., operational=True)``: how the run works, such as
  progress bars, threads or devices, or which steps it adds, never what a saved step computed).
Subclasses put their own checks in ``validate``, as ``(ok, field, expected)`` rows for ``require``;
construction converts and validates. A refused value is named where it came from: its option (``--epochs``)
for a command-line option, ``FILE: epochs`` for a key of a config file.
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from biostrata.errors import DataNotFoundError, InputError, ParameterError
from biostrata.io import atomic_write_json, atomic_write_text
from biostrata.provenance import code_version

S = TypeVar("S", bound="Settings")
OPTIONS = "command-line options"  # the source of settings given on the command line only

__all__ = [
    "SettingError",
    "Settings",
    "field_help",
    "changes",
    "operational",
    "source_constant",
    "defaults_from",
    "signature_defaults",
]


class SettingError(ParameterError):
    """A setting whose value is refused by a check of ``validate``: ``key`` (its ``param``) names the field."""

    def __init__(self, key: str, value: Any, expected: str) -> None:
        self.key, self.value, self.expected = key, value, expected
        super().__init__(key, f"{key}={value!r} is invalid; expected {expected}")

    def named(self, flag: str | None) -> str:
        """The message with the field's command-line option (``flag``) named too, if given."""
        option = f" ({flag})" if flag else ""
        return f"{self.key}={self.value!r}{option} is invalid; expected {self.expected}"


def changes(then: dict, now: dict, ignore: Collection[str] = ()) -> list[str]:
    """``"key: <then> there, <now> now"`` for every key of either dict, but ``ignore``, whose values differ:
    what a resumed run would change in the settings its saved outputs were made with."""
    keys = sorted(k for k in {*then, *now} if k not in ignore and then.get(k) != now.get(k))
    return [f"{k}: {then.get(k)!r} there, {now.get(k)!r} now" for k in keys]


def field_help(text: str, operational: bool = False) -> dict:
    """``metadata`` of a field with this help text: ``field(default=..., metadata=field_help("..."))``;
    ``operational``: the field does not change the results a run saves, so a run resumes with another value
    of it (see :func:`operational`)."""
    return {"help": text, "operational": True} if operational else {"help": text}


def operational(settings: Any) -> frozenset[str]:
    """The names of the fields of the dataclass (or dataclass type) ``settings`` marked operational in their
    metadata (``field_help(..., operational=True)``): those a resumed run may change."""
    return frozenset(f.name for f in dataclasses.fields(settings) if f.metadata.get("operational"))


@functools.cache
def _source(module: str) -> tuple[Path, ast.Module]:
    """The path and syntax tree of the biostrata module ``module`` (dotted), read without importing it."""
    top, *parts = module.split(".")
    base = Path(__file__).parent.joinpath(*parts)
    path = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
    if top != "biostrata" or not path.is_file():
        raise LookupError(f"{module}: not a module of biostrata (no {path})")
    return path, ast.parse(path.read_text(), str(path))


def signature_defaults(target: str) -> dict[str, Any]:
    """``{parameter: default}`` of the function ``target`` (``"biostrata.module:function"`` or
    ``"biostrata.module:Class.method"``), read from its signature in the module's source without importing the
    module (so that settings read the defaults of a function of torch without loading torch). A ``@dataclass``
    without an ``__init__`` of its own stands for its constructor: its fields' defaults (``x: int = 3``). Each
    default must be a literal (a number, string, bool, None, or a tuple, list or dict of those) or the name of a
    module-level constant that is one (:func:`source_constant`, which follows ``from biostrata... import``)."""
    module, _, name = target.partition(":")
    path, node = _source(module)
    for part in name.split("."):
        defs = (n for n in node.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == part)
        found = next(defs, None)
        if found is None:
            raise LookupError(f"{path}: no {name} (a settings class reads its defaults from {target}; update it)")
        node = found
    if isinstance(node, ast.ClassDef) and _is_dataclass(node):
        return _field_defaults(node, module, path, name)
    if not isinstance(node, ast.FunctionDef):
        raise LookupError(f"{path}:{node.lineno}: {name} is not a function (nor a dataclass without an __init__)")
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    pairs = [
        *zip(positional[len(positional) - len(args.defaults) :], args.defaults),
        *zip(args.kwonlyargs, args.kw_defaults),
    ]
    return {
        arg.arg: _literal(default, module, path, f"the default of {name}'s {arg.arg}")
        for arg, default in pairs
        if default is not None  # None: a keyword-only parameter without a default
    }


def _is_dataclass(node: ast.ClassDef) -> bool:
    """Whether the class ``node`` is decorated ``@dataclass`` (or ``@dataclass(...)``, ``@dataclasses.dataclass``)
    and defines no ``__init__``: its constructor's parameters are its fields."""

    def name(decorator: ast.expr) -> str | None:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        return target.id if isinstance(target, ast.Name) else target.attr if isinstance(target, ast.Attribute) else None

    own_init = any(isinstance(n, ast.FunctionDef) and n.name == "__init__" for n in node.body)
    return not own_init and any(name(d) == "dataclass" for d in node.decorator_list)


def _field_defaults(node: ast.ClassDef, module: str, path: Path, name: str) -> dict[str, Any]:
    """``{field: default}`` of the dataclass ``node``: its annotated class attributes with a value, a literal
    (``x: int = 3``) or ``field(default=...)``; a field without a default, or a ``default_factory``, is left out
    (fields it inherits too: give the dataclass that declares them)."""
    defaults = {}
    for item in node.body:
        if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value is not None):
            continue
        value, what = item.value, f"the default of {name}'s {item.target.id}"
        if isinstance(value, ast.Call) and getattr(value.func, "id", getattr(value.func, "attr", None)) == "field":
            value = next((k.value for k in value.keywords if k.arg == "default"), None)
            if value is None:
                continue
        defaults[item.target.id] = _literal(value, module, path, what)
    return defaults


def _literal(expr: ast.expr, module: str, path: Path, what: str) -> Any:
    """The value of the expression ``expr`` of ``module`` (at ``path``): a literal, or the name of a module-level
    constant of ``module`` (:func:`source_constant`); ``what`` names it in the error otherwise."""
    if isinstance(expr, ast.Name):
        return source_constant(f"{module}:{expr.id}")
    try:
        return ast.literal_eval(expr)
    except ValueError:
        raise ValueError(
            f"{path}:{expr.lineno}: {what} is not a literal; settings read it from there, so write the value itself"
        ) from None


def source_constant(target: str) -> Any:
    """The value of the module-level constant ``target`` (``"biostrata.module:NAME"``, a literal such as
    ``NAME = ("a", "b")``, or the name of another such constant), read from the module's source without importing
    it, as :func:`signature_defaults` reads defaults: so a vocabulary (allowed values) is written once, in the
    module that uses it, and settings check against it before torch loads. A name the module imports from another
    module of biostrata (``from biostrata.nn.lorentz import REFERENCE_RADIUS_CLIP``) is read there."""
    return _constant(target, ())


def _constant(target: str, seen: tuple[str, ...]) -> Any:
    if target in seen:
        raise ValueError(f"{target}: defined by itself ({' -> '.join([*seen, target])})")
    module, _, name = target.partition(":")
    path, tree = _source(module)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            value = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            value = node.value
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "biostrata":
            imported = next((a.name for a in node.names if (a.asname or a.name) == name), None)
            if imported is None:
                continue
            return _constant(f"{node.module}:{imported}", (*seen, target))
        else:
            continue
        if isinstance(value, ast.Name):
            return _constant(f"{module}:{value.id}", (*seen, target))
        try:
            return ast.literal_eval(value)
        except ValueError:
            raise ValueError(
                f"{path}:{node.lineno}: {name} is not a literal; settings read it from there, so write the value itself"
            ) from None
    raise LookupError(f"{path}: no constant {name} (settings read it from {target}; update it)")


def defaults_from(*targets: str, **renamed: str) -> Callable[[type[S]], type[S]]:
    """Class decorator, under ``@dataclass``: each field declared without a default (``x: int`` or
    ``x: int = field(metadata=...)``) takes the default of the parameter ``x`` (``renamed[x]`` where the
    function calls it otherwise) of the first of ``targets`` that has it (:func:`signature_defaults`). So a default
    is written once, in the signature of the function the settings configure; a list is copied for each instance.
    The fields read are recorded in ``__defaults_from__``: ``{field: (target, parameter)}``."""

    def decorate(cls: type[S]) -> type[S]:
        found: dict[str, tuple[str, Any]] = {}
        for target in reversed(targets):
            found |= {param: (target, value) for param, value in signature_defaults(target).items()}
        read = {}
        for name in cls.__dict__.get("__annotations__", {}):
            declared = cls.__dict__.get(name, dataclasses.field())
            if not isinstance(declared, dataclasses.Field) or not _no_default(declared):
                continue  # a default of its own
            param = renamed.get(name, name)
            if param not in found:
                raise TypeError(f"{cls.__name__}.{name}: no default, and none of {', '.join(targets)} has {param}=")
            target, value = found[param]
            if isinstance(value, (list, dict)):
                declared.default_factory = functools.partial(copy.deepcopy, value)
            else:
                declared.default = value
            setattr(cls, name, declared)
            read[name] = (target, param)
        cls.__defaults_from__ = read  # type: ignore[attr-defined]
        return cls

    return decorate


def _no_default(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """(T, True) for ``T | None``; (tp, False) otherwise."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _convert(value: Any, tp: Any, where: str) -> Any:
    """``value`` as type ``tp`` (bool, int, float, str, list[...] of those, or ``T | None``)."""
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise InputError(f"{where}: a value is required (got nothing)")
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp) or (Any,)
        items = value if isinstance(value, (list, tuple)) else [value]
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(items)]
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise InputError(f"{where}: {value!r} is not true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise InputError(f"{where}: {value!r} is not a whole number")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())  # YAML 1.1 reads 1e-3 (no dot) as a string
            except ValueError:
                pass
        if number is not None and math.isfinite(number):
            return number
        raise InputError(f"{where}: {value!r} is not a {'finite ' if number is not None else ''}number")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. devices: 2, precision: 16
        raise InputError(f"{where}: {value!r} is not text")
    return value


class Settings:
    """Base of the settings dataclasses (see the module docstring)."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, _convert(getattr(self, f.name), hints[f.name], f"{type(self).__name__}: {f.name}"))
        self.validate()

    def validate(self) -> None:
        """Checks beyond the types; raise ``InputError`` naming the field (``require`` does)."""

    def require(self, checks: Iterable[tuple[bool, str, str]]) -> None:
        """Raise a :class:`SettingError` for the first ``(ok, field, expected)`` that is not ok."""
        for ok, key, expected in checks:
            if not ok:
                raise SettingError(key, getattr(self, key), expected)

    @classmethod
    def from_dict(
        cls: type[S], values: dict[str, Any], source: str | None = None, options: Mapping[str, str] | None = None
    ) -> S:
        """Settings of ``values`` read from ``source`` (a file name; default: the class name); the keys of
        ``options`` were given as command-line options, and an error names them by their option (the value)."""
        options = options or {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        source = source or cls.__name__
        if unknown:
            raise InputError(f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        hints = typing.get_type_hints(cls)
        converted = {k: _convert(v, hints[k], options.get(k, f"{source}: {k}")) for k, v in values.items()}
        try:
            return cls(**converted)
        except SettingError as err:  # a check in validate(): say where the value came from
            raise InputError(
                err.named(options[err.key]) if err.key in options else f"{source}: {err.named(None)}"
            ) from None
        except InputError as err:  # a check that does not say which field
            if str(err).startswith(source):
                raise
            where = f"{source} and the command-line options" if options and source != OPTIONS else source
            raise InputError(f"{where}: {err}") from None

    @classmethod
    def from_yaml(cls: type[S], path: str | Path) -> S:
        return cls.from_dict(cls.file_values(read_yaml(Path(path))), str(path))

    @classmethod
    def file_values(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The settings of a YAML file's mapping (a subclass may read a file that its command writes)."""
        return values

    def to_yaml(self, path: str | Path) -> None:
        atomic_write_text(Path(path), yaml.safe_dump(dataclasses.asdict(self), sort_keys=False))

    def resume_changes(self, then: dict[str, Any], per_run: Collection[str] = ()) -> list[str]:
        """:func:`changes` from the saved fields ``then`` to these settings in the fields that make a run's
        results: all but the operational ones and ``per_run`` (fields the caller sets per run itself)."""
        import json

        then, now = (json.loads(json.dumps(d, default=str)) for d in (then, dataclasses.asdict(self)))  # as saved
        return changes(then, now, operational(self) | set(per_run))

    def check_resume(
        self, path: str | Path, per_run: Collection[str] = (), inputs: Mapping[str, Any] | None = None
    ) -> None:
        """Refuse to resume a run whose saved settings (``path``, a JSON file of the fields in the run's
        folder, as :meth:`record` writes it; absent: a new run) differ from these (see :meth:`resume_changes`),
        or whose saved ``inputs`` (files the run reads that are no field) differ from ``inputs``: its outputs
        were made with those. The error is one of the caller's ``out``, the folder
        (:class:`~biostrata.errors.ParameterError`)."""
        import json

        path = Path(path)
        if not path.is_file():
            return
        try:
            then = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ParameterError(
                "out",
                f"out={path.parent}: {path.name} is not valid JSON ({err}); give another out, or delete the folder",
            ) from None
        then.pop("code_version", None)
        saved_inputs = then.pop("inputs", {})
        diff = self.resume_changes(then, per_run) + changes(saved_inputs, dict(inputs or {}))
        if diff:
            raise ParameterError(
                "out",
                f"out={path.parent}: holds results made with other settings ({'; '.join(diff)}); resume with the "
                "same settings, or give another out (or delete the folder)",
            )

    def record(self, path: str | Path, inputs: Mapping[str, Any] | None = None, resume: bool = True) -> None:
        """Keep these settings (and ``inputs``, as text) in ``path`` (JSON, atomic, with the code version) for a
        run in that folder, after :meth:`check_resume` when the run ``resume``s there: a run resumes only with
        the settings and inputs it was started with."""
        inputs = {k: None if v is None else str(v) for k, v in (inputs or {}).items()}
        if resume:
            self.check_resume(path, inputs=inputs)
        record = {**dataclasses.asdict(self), **({"inputs": inputs} if inputs else {})}
        atomic_write_json(Path(path), {**record, "code_version": code_version()})

    def require_files(self, names: Sequence[str]) -> None:
        """Refuse, before any work, a field among ``names`` that is not the path of a file: one line that
        names the field and the path (a :class:`~biostrata.errors.DataNotFoundError` of the field, whose
        command-line option the command adds)."""
        for name in names:
            path = Path(getattr(self, name))
            if not path.is_file():
                what = "a folder" if path.is_dir() else "no such file"
                raise DataNotFoundError(f"{name}: {path}: {what}; give the path of a file", param=name)

    def replace(self: S, **changes: Any) -> S:
        return type(self).from_dict({**dataclasses.asdict(self), **changes})

    @classmethod
    def from_args(cls: type[S], args: argparse.Namespace) -> S:
        """The settings of ``--config`` (or the defaults) with the options given on the command line (their
        flags in ``args.flags``, as :func:`biostrata.cli.options.add_settings` records them)."""
        path = getattr(args, "config", None)
        values = cls.file_values(read_yaml(Path(path))) if path else {}
        changes = {
            f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None
        }
        options = {name: args.flags[name] for name in changes}
        return cls.from_dict({**values, **changes}, str(path) if path else OPTIONS, options)


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping of a YAML config file; an error names the file."""
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise InputError(f"{path}: config file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise InputError(f"{path}: expected a mapping of config keys, found {type(values).__name__}")
    return values
