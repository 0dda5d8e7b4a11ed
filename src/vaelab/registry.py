"""A registry maps the name stored in a config to the factory that builds the part."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Generic, TypeVar

from . import plugins
from .errors import VaelabError

T = TypeVar("T")

# Modules whose functions only pass a registration on (`register_encoder`): the module that registered a part is
# the first one outside them on the stack.
_PASS_ON = {__name__, "vaelab.models.registry"}


class Registry(Generic[T]):
    """`{"name": factory}` for one kind of part, with a clear error for unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._providers: dict[str, str | None] = {}  # name -> the module whose code registered it

    def register(self, name: str, item: T | None = None):
        """Register `item` under `name`; usable as a decorator when `item` is omitted.

        The same function registered again (same module and qualified name, as
        re-running a notebook cell or re-importing a module gives) replaces the
        old one; anything else under a taken name is a ValueError.
        """

        def add(obj: T) -> T:
            if name in self._items and not _same_definition(self._items[name], obj):
                raise ValueError(
                    f"{self.kind} {name!r} is already registered (by module "
                    f"{self._providers.get(name)!r}); register yours under another name"
                )
            self._items[name] = obj
            self._providers[name] = _registering_module()
            return obj

        return add(item) if item is not None else add

    def find(self, name: str) -> T | None:
        """The item registered under `name`, or None; a name not found loads the installed plugins first."""
        if name not in self._items:
            plugins.load_entry_points()
        return self._items.get(name)

    def __getitem__(self, name: str) -> T:
        item = self.find(name)
        if item is None:
            raise VaelabError(self.unknown(name))
        return item

    def unknown(self, name: str) -> str:
        """The one-line error for a name that is not registered (plugins that failed to load included)."""
        known = ", ".join(sorted(self._items))
        return f"unknown {self.kind} {name!r} (known: {known}){plugins.failures_note()}"

    def provider(self, name: str) -> str | None:
        """The module whose code registered `name` (`__main__` for a script or notebook), None if not registered."""
        return self._providers.get(name) if name in self._items else None

    def remove(self, name: str) -> None:
        """Forget `name` (tests; a notebook taking a part back)."""
        self._items.pop(name, None)
        self._providers.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def names(self) -> list[str]:
        return list(self._items)


def _same_definition(old: object, new: object) -> bool:
    """The same function defined again: same module and qualified name."""
    if old is new:
        return True
    key = (getattr(new, "__module__", None), getattr(new, "__qualname__", None))
    return key[1] is not None and key == (getattr(old, "__module__", None), getattr(old, "__qualname__", None))


def _registering_module() -> str | None:
    """The `__name__` of the module whose code called `register` (past the functions that pass it on)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") in _PASS_ON:
        frame = frame.f_back
    return frame.f_globals.get("__name__") if frame is not None else None
