"""Every public class, function and method of fluxlite says what it is for.

Each module of the package is imported (one whose import needs an optional dependency
that is absent here, such as Flux's bindings or boto3, is passed over) and every public
name defined in it — not imported into it — is checked for a docstring: functions,
classes, and the methods (properties included) a class defines itself. A method that
overrides a documented one of a base class has that docstring (as ``inspect.getdoc`` and
pydoc show it): the contract is said once, where it is defined.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from types import ModuleType

import fluxlite

# what a module may fail to import with when an optional dependency is absent here
_OPTIONAL = ("flux", "boto3", "botocore", "matplotlib", "playwright")


def _modules() -> list[ModuleType]:
    mods = [fluxlite]
    for info in pkgutil.walk_packages(fluxlite.__path__, "fluxlite."):
        if info.name.endswith(".__main__"):
            continue  # runs its command when imported
        try:
            mods.append(importlib.import_module(info.name))
        except ImportError as err:
            if (err.name or "").split(".")[0] not in _OPTIONAL:
                raise
    return mods


def _class_doc(cls: type) -> str | None:
    """The class's own docstring: not the signature a dataclass puts there for want of one."""
    doc = cls.__doc__
    if doc and dataclasses.is_dataclass(cls) and doc.startswith(f"{cls.__name__}("):
        return None
    return doc


def _inherited(cls: type, attr: str) -> bool:
    """Whether a base class of ``cls`` documents the method ``attr`` overrides."""
    for base in cls.__mro__[1:]:
        member = vars(base).get(attr)
        if member is not None:
            func = member.fget if isinstance(member, property) else member
            return bool(getattr(func, "__doc__", None))
    return False


def _undocumented(mod: ModuleType) -> list[str]:
    missing: list[str] = []
    for name, obj in vars(mod).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
            continue
        if inspect.isclass(obj):
            if not _class_doc(obj):
                missing.append(f"{mod.__name__}.{name}")
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                func = member.fget if isinstance(member, property) else member
                if isinstance(func, (staticmethod, classmethod)):
                    func = func.__func__
                if inspect.isfunction(func) and not func.__doc__ and not _inherited(obj, attr):
                    missing.append(f"{mod.__name__}.{name}.{attr}")
        elif inspect.isfunction(obj) and not obj.__doc__:
            missing.append(f"{mod.__name__}.{name}")
    return missing


def test_every_public_class_function_and_method_has_a_docstring() -> None:
    missing = [m for mod in _modules() for m in _undocumented(mod)]
    assert not missing, f"{len(missing)} without a docstring:\n" + "\n".join(missing)
