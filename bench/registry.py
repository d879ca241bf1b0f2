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
    """A dict filled by a decorator; a failed lookup lists every valid name.

    A registry only holds entries: it never imports what registers into it. `empty_hint` is what
    a failed lookup in an empty registry says instead of an empty list of names (how to load the
    built-ins, for the catalog's registries)."""

    def __init__(self, kind: str, empty_hint: str = ""):
        self.kind = kind
        self._items: dict[str, T] = {}
        self.empty_hint = empty_hint
        self._prefixes: dict[str, tuple[Callable[[str], T], Callable[[str], str]]] = {}

    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items and not replace and self._items[name] is not obj:
                raise UsageError(
                    f"{self.kind} {name!r} is already registered (by {_origin(self._items[name])}); "
                    f"choose another name")
            self._items[name] = obj
            return obj
        return decorator

    def register_prefix(self, prefix: str, factory: Callable[[str], T],
                        canonical: Callable[[str], str] = str) -> None:
        """Names `prefix + rest` are built on their first lookup by `factory(name)`, which raises
        UsageError for a bad `rest`: entries such as image folders that are named by a path.
        `canonical(name)` gives the one spelling stored in configs (e.g. an absolute path)."""
        self._prefixes[prefix] = (factory, canonical)

    def _prefixed(self, name: str) -> tuple[Callable[[str], T], Callable[[str], str]] | None:
        return next((v for p, v in self._prefixes.items()
                     if name.startswith(p) and len(name) > len(p)), None)

    def _from_prefix(self, name: str) -> T | None:
        found = self._prefixed(name)
        if found is None:
            return None
        key = found[1](name)
        if key not in self._items:
            self._items[key] = found[0](key)
        return self._items[key]

    def get(self, name: str) -> T:
        built = self._from_prefix(name)
        if built is not None:
            return built
        key = self.canonical(name)
        if key not in self._items:
            if not self._items and not self._prefixes:
                raise UnknownNameError(f"unknown {self.kind} {name!r}: no {self.kind} is "
                                       f"registered in this process{self.empty_hint}")
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}")
        return self._items[key]

    def canonical(self, name: str) -> str:
        """Names are case-insensitive for users; registered spelling is canonical."""
        items = self._items
        found = self._prefixed(name)
        if found is not None:
            return found[1](name)
        if name in items:
            return name
        for key in items:
            if key.lower() == name.lower():
                return key
        return name

    def names(self) -> list[str]:
        items = self._items
        return sorted(k for k in items if not any(k.startswith(p) for p in self._prefixes)) + \
            [f"{p}..." for p in self._prefixes]

    def __contains__(self, name: str) -> bool:
        if any(name.startswith(p) and len(name) > len(p) for p in self._prefixes):
            return True  # a well-formed name; whether its target is valid, get() says
        return self.canonical(name) in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))


def _origin(obj: object) -> str:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    return f"{module}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"
