"""Plugin registries: one per kind (encoder, leg, fusion), names in kebab-case.

Built-ins are declared through the same entry-point groups third-party plugins use
(``[project.entry-points."mm_retriever.encoders"]`` and so on), so that path is always exercised.
Entry points are loaded lazily: a name resolves to its class only when it is asked for.

A plugin package declares, in its pyproject.toml::

    [project.entry-points."mm_retriever.legs"]
    my-leg = "my_package.module:MyLeg"

and is then usable by name: ``LegSpec(name="my-leg", ...)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from mm_retriever.errors import RegistryError

T = TypeVar("T")

_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


class Registry(Generic[T]):
    """Name -> factory mapping for one kind of plugin, fed by an entry-point group."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._factories: dict[str, Callable[..., T]] = {}
        self._entry_points: dict[str, Any] | None = None

    def _discover(self) -> dict[str, Any]:
        if self._entry_points is None:
            found: dict[str, Any] = {}
            for ep in entry_points(group=self.group):
                if ep.name in found and found[ep.name].value != ep.value:
                    raise RegistryError(
                        f"duplicate {self.kind} name '{ep.name}' in entry-point group "
                        f"'{self.group}': {found[ep.name].value} and {ep.value}"
                    )
                found[ep.name] = ep
            self._entry_points = found
        return self._entry_points

    def register(self, name: str, factory: Callable[..., T] | None = None):
        """Register ``factory`` under ``name``; usable as a decorator. Duplicates are rejected."""
        if not _NAME.match(name):
            raise RegistryError(
                f"{self.kind} name '{name}' must be kebab-case, e.g. 'my-{self.kind}'"
            )

        def add(f: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories or name in self._discover():
                raise RegistryError(f"a {self.kind} named '{name}' is already registered")
            self._factories[name] = f
            return f

        return add(factory) if factory is not None else add

    def get(self, name: str) -> Callable[..., T]:
        """The factory (usually a class) registered as ``name``."""
        if name in self._factories:
            return self._factories[name]
        eps = self._discover()
        if name not in eps:
            known = ", ".join(sorted(self.names())) or "none"
            raise RegistryError(f"unknown {self.kind} '{name}'; registered: {known}")
        factory = eps[name].load()
        self._factories[name] = factory
        return factory

    def create(self, name: str, **kwargs: Any) -> T:
        """Instantiate the plugin ``name`` with keyword arguments."""
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(set(self._factories) | set(self._discover()))

    def __contains__(self, name: object) -> bool:
        return name in self._factories or name in self._discover()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


encoders: Registry[Any] = Registry("encoder", "mm_retriever.encoders")
legs: Registry[Any] = Registry("leg", "mm_retriever.legs")
fusions: Registry[Any] = Registry("fusion", "mm_retriever.fusions")
