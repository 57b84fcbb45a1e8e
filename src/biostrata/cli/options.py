"""Every command's options, made in one place from where their defaults are written.

An option is one of three things:
- a parameter of the library function the command calls: its type and default are read from the function's
  signature (``Option("kernel", "CKA kernel", choices=...)`` with :func:`add_options` ``(p, cka, ...)``);
- a field of a settings class: :func:`add_settings` makes one option per field (the field's type, and its
  default in the help text; the option defaults to "not given", so that ``--config`` FILE is overridden only
  by what the command line gives);
- the command's own option, which no library function takes (``--json``, ``--overwrite``): the ``Option``
  gives its ``default`` (or its ``type``), the one place that default is written.

The command writes only what the library cannot say: the help text, and the bits of the command line (a
positional argument, a metavar, choices, several values, a path checked before any work). The help shows every
default (:class:`biostrata.cli.HelpFormatter`). Each parser keeps the option each parameter is given by
(``args.flags``: ``{"token_budget": "--token-budget", "trusted": "--trust-checkpoint", "x": "INPUT"}``), so that an
error a library function raises for one of its parameters (:class:`~biostrata.errors.ParameterError`) names
the option too (:func:`named`), and a settings class names the option of a refused field.

Reading a signature imports the function's module: the functions named here load no torch at import time,
so that ``--help`` and a refused option answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from biostrata.errors import BiostrataError
from biostrata.settings import SettingError

if TYPE_CHECKING:
    from biostrata.settings import Settings

__all__ = ["PATH_KINDS", "Option", "add_options", "add_settings", "flag_of", "named", "paths"]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # an Option that gives no default of its own: the library function's is used


@dataclass(frozen=True)
class Option:
    """One option of a command (see the module docstring). ``name`` is where the value goes (``args.name``)
    and names the option (``--name-with-dashes``, or a positional argument); ``param`` is the parameter of the
    function that takes it, where it is named otherwise (``trust_checkpoint`` for ``load(trusted=...)``), and
    ``of`` that function where it is not the one the command calls. An option that gives a ``default`` or a
    ``type`` is the command's own: it has no parameter. ``path`` is a kind of :data:`PATH_KINDS`: the
    path is checked before the command does any work."""

    name: str
    help: str
    param: str | None = None
    of: Callable | None = None
    default: Any = UNSET
    type: type | None = None
    positional: bool = False
    nargs: str | None = None
    choices: Sequence[Any] | None = None
    metavar: str | None = None
    required: bool = False
    path: str | None = None

    @property
    def own(self) -> bool:
        """Whether the option is the command's own (no library function takes it)."""
        return self.default is not UNSET or self.type is not None

    @property
    def label(self) -> str:
        """What the command line calls it: ``--name-with-dashes``, or a positional's metavar."""
        return (self.metavar or self.name.upper()) if self.positional else flag_of(self.name)


def flag_of(name: str) -> str:
    """The flag of an option named ``name``: ``--token-budget`` for ``token_budget``."""
    return "--" + name.replace("_", "-")


def add_options(
    parser: argparse.ArgumentParser, function: Callable | None, *options: Option, title: str | None = None
) -> None:
    """Add ``options`` to ``parser`` (in an argument group ``title``, if given), each a parameter of
    ``function`` (or of its ``of``) unless it is the command's own; record their flags and paths."""
    group = parser.add_argument_group(title) if title else parser
    flags = {}
    for option in options:
        value, many, default = _kind(option, function)
        kwargs: dict[str, Any] = {"help": option.help, "default": default}
        if value is bool and not many:
            kwargs["action"] = "store_true" if default is False else argparse.BooleanOptionalAction
        else:
            kwargs.update(type=value, nargs=option.nargs or ("+" if many else None), choices=option.choices)
            kwargs.update(metavar=option.metavar)
        if option.positional:
            group.add_argument(option.name, **kwargs)
        else:
            group.add_argument(option.label, dest=option.name, required=option.required, **kwargs)
        flags[option.param or option.name] = option.label
    parser.set_defaults(flags={**(parser.get_default("flags") or {}), **flags})
    paths(parser, **{o.name: o.path for o in options if o.path})


# What a path option names, checked by :func:`.common.check_paths` before a command does any work.
PATH_KINDS = ("file", "dir", "any", "spec", "out_dir", "out_file")


def paths(p: argparse.ArgumentParser, **kinds: str) -> None:
    """Declare options of ``p`` that name paths, by destination: ``file`` (a model folder of
    ``save_pretrained`` counts as one), ``dir`` or ``any`` (must exist), ``spec`` (``FILE[:LAYER]``: the file must exist), ``out_dir`` or ``out_file`` (must be
    creatable: not the wrong kind of thing already, inside a writable folder)."""
    unknown = {k for k in kinds.values() if k not in PATH_KINDS}
    assert not unknown, unknown  # a programming error, not a user's
    label = {a.dest: a.option_strings[0] if a.option_strings else (a.metavar or a.dest.upper()) for a in p._actions}
    declared = {dest: (kind, label[dest]) for dest, kind in kinds.items()}
    p.set_defaults(path_kinds={**(p.get_default("path_kinds") or {}), **declared})


def _kind(option: Option, function: Callable | None) -> tuple[type, bool, Any]:
    """(the type of one value, whether the option takes several, its default) of ``option``: its own, or read
    from the parameter of the function that takes it."""
    if option.own:
        default = None if option.default is UNSET else option.default
        value = option.type or (type(default[0]) if isinstance(default, list) else type(default))
        return (str if value is type(None) else value), isinstance(default, list), default
    source = option.of or function
    assert source is not None, f"{option.name}: no function takes it; give its default"
    parameter = inspect.signature(source).parameters.get(option.param or option.name)
    assert parameter is not None, (
        f"{getattr(source, '__name__', source)} has no parameter {option.param or option.name}"
    )
    value, many = value_type(_annotation(parameter, source))
    default = None if parameter.default is inspect.Parameter.empty else parameter.default
    if many and default is not None:  # several values: a list, also of a default of one ("mean" of str | list[str])
        default = list(default) if isinstance(default, (list, tuple)) else [default]
    return value, many, default


def _annotation(parameter: inspect.Parameter, function: Callable) -> Any:
    """The annotation of ``parameter``, evaluated in the namespace of ``function``'s module where it is text
    (``from __future__ import annotations``); only this parameter's, so names imported for type checking only
    do not matter."""
    annotation = parameter.annotation
    if isinstance(annotation, str):
        return eval(annotation, vars(sys.modules[function.__module__]))  # noqa: S307 (our own source code)
    return Any if annotation is inspect.Parameter.empty else annotation


def value_type(annotation: Any) -> tuple[type, bool]:
    """(the type of one value on the command line, whether there are several) of a type annotation: ``int``,
    ``bool``, ``float``, ``str`` (anything else, such as a path, is given as text), ``T | None`` as ``T``, a
    list or sequence of ``T`` (alone or beside ``T``) as several ``T``."""
    alternatives = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    alternatives = tuple(a for a in alternatives if a is not type(None))
    several = [a for a in alternatives if typing.get_origin(a) in (list, tuple, Sequence)]
    if several:
        (item, *_) = typing.get_args(several[0]) or (str,)
        return value_type(item)[0], True
    first = alternatives[0] if alternatives else str
    return (first if first in (bool, int, float, str) else str), False


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def add_settings(
    parser: argparse.ArgumentParser, settings: type[Settings], title: str, skip: tuple[str, ...] = ()
) -> None:
    """``--config FILE`` and one option per field of ``settings`` but ``skip`` (see :mod:`biostrata.settings`),
    all defaulting to "not given"; the help text is the field's ``metadata["help"]`` and its default.
    :func:`biostrata.cli.main` reads them into ``args.settings`` before the command runs
    (``Settings.from_args``), so a bad option or config file is reported before torch loads."""
    hints = typing.get_type_hints(settings)
    options = [Option("config", "YAML file of these options; options given here override it", type=str, path="file")]
    for f in dataclasses.fields(settings):
        if f.name in skip:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        shown = " ".join(map(str, default)) if isinstance(default, list) else default
        text = f"{f.metadata['help']} " if "help" in f.metadata else ""
        value, many = value_type(hints[f.name])
        options.append(
            Option(f.name, f"{text}(default: {shown})", type=value, default=None, nargs="*" if many else None)
        )
    add_options(parser, None, *options, title=f"{title} (override --config)")
    parser.set_defaults(settings_class=settings)


def named(err: BiostrataError, flags: Mapping[str, str]) -> str:
    """The message of ``err`` with the option of its parameter (a :class:`~biostrata.errors.ParameterError`'s, or the ``param`` a
    :class:`~biostrata.errors.DataNotFoundError` names), by the command's ``flags``: ``token_budget=0
    (--token-budget): must be at least 1`` for ``token_budget=0: must be at least 1``; a message that does
    not begin with the parameter gets it in front, with the option; an error of no parameter is as it is."""
    param = getattr(err, "param", None)
    flag = flags.get(param) if param else None
    text = str(err)
    if flag is None:
        return text
    if isinstance(err, SettingError):  # "key=value (--flag) is invalid; expected ..."
        return err.named(flag)
    head, colon, rest = text.partition(": ")
    if colon and (head == param or head.startswith((f"{param}=", f"{param}["))):
        return f"{head} ({flag}): {rest}"
    return f"{param} ({flag}): {text}"
