"""One small registry type shared by methods, datasets, models and grids."""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UsageError(ValueError):
    """Bad input from a user: the command line prints it as one line and exits with code 2."""


class UnknownNameError(UsageError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """A dict filled by a decorator; a failed lookup lists every valid name."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items and not replace and self._items[name] is not obj:
                raise UsageError(
                    f"{self.kind} {name!r} is already registered (by {_origin(self._items[name])}); "
                    f"choose another name")
            self._items[name] = obj
            return obj
        return decorator

    def get(self, name: str) -> T:
        key = self.canonical(name)
        if key not in self._items:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}")
        return self._items[key]

    def canonical(self, name: str) -> str:
        """Names are case-insensitive for users; registered spelling is canonical."""
        if name in self._items:
            return name
        for key in self._items:
            if key.lower() == name.lower():
                return key
        return name

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return self.canonical(name) in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _origin(obj: object) -> str:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    return f"{module}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"
