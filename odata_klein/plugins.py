"""Finding provider plugins through Twisted's plugin system."""

from __future__ import annotations

from twisted.plugin import getPlugins

from .interfaces import IProviderFactory


def provider_factories() -> dict[str, IProviderFactory]:
    """Every installed provider factory, by name."""
    import odata_klein_plugins

    return {factory.name: factory for factory in getPlugins(IProviderFactory, odata_klein_plugins)}


def find_provider_factory(name: str) -> IProviderFactory:
    factories = provider_factories()
    if name not in factories:
        known = ", ".join(sorted(factories)) or "none"
        raise KeyError(f"no OData provider named {name!r} is installed (installed: {known})")
    return factories[name]
