"""
The contract between the OData engine and entity-set providers.

A provider plugin is a module in the ``odata_klein_plugins`` package holding
an object that provides `IProviderFactory`; `twisted.plugin.getPlugins` finds
it.  The factory builds an `IProvider` from the service options; for each
request the engine opens an `IProviderSession` with the caller's credentials
and asks it for the model and for rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping, Optional, Sequence

from zope.interface import Attribute, Interface

from .bound import BoundExpr
from .model import Model

if TYPE_CHECKING:
    from .records import RecordReader

# A row: property name -> Python value (see `odata_klein.model.Property`).
# Rows may hold navigation property names too, mapped to the related row
# (single-valued) or a list of rows (collection-valued), once expanded.
Row = dict[str, Any]

# Where a provider can resume after a row: any JSON value (it travels inside
# the opaque $skiptoken of a nextLink, and comes back as untrusted input).
Cursor = Any


@dataclass(frozen=True)
class Credentials:
    """What the caller presented in its Authorization header."""

    scheme: str  # "basic" or "bearer"
    user: Optional[str]
    secret: str = field(repr=False)


@dataclass(frozen=True)
class NavigationSource:
    """
    Rows wanted are those related to one entity through a navigation property
    without referential constraints (``Timesheets('x')/TimeEntries``).
    """

    entity_set: str
    key: Mapping[str, Any]
    navigation_property: str
    # The source entity as the engine read it, so that a provider can derive
    # the related rows from its values without reading it again.
    row: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderQuery:
    """
    What the engine asks a provider for.

    ``filter`` must hold for every row the engine finally returns; the provider
    applies what it can and reports the rest as `QueryResult.residual`.
    ``resume`` is a cursor the provider produced earlier (validate it: it came
    back from a client).  ``skip`` is how many matching rows the engine will
    leave out first ($skip): a provider that applies the whole filter may
    leave them out itself (ClickTime by its offset) and say how many it did
    in `IQueryResult.skipped`.  ``limit`` is the most rows the engine will
    read after filtering, those to skip included, a hint to avoid
    over-fetching (None: all).  ``properties`` are the properties the engine
    needs in rows (None: all).
    """

    entity_set: str
    filter: Optional[BoundExpr] = None
    resume: Optional[Cursor] = None
    limit: Optional[int] = None
    properties: Optional[frozenset[str]] = None
    parent: Optional[NavigationSource] = None
    skip: int = 0


@dataclass(frozen=True)
class RowBatch:
    """
    Rows in the provider's order, and for each the cursor that resumes right
    after it.  Providers yield batches as they arrive from their backend.

    With a ``reader``, ``rows`` are the backend's JSON records, and the
    engine turns them into rows with it, or writes them as OData JSON
    directly when it needs no typed row (`odata_klein.records`).  ``last``
    says, when the provider knows it, that no batch follows: a page that
    ends on time then needs no nextLink.
    """

    rows: Sequence[Any]
    cursors: Sequence[Cursor]
    reader: Optional["RecordReader"] = None
    last: bool = False


@dataclass
class UpstreamCall:
    """One request a provider made to its backend, for logs and the console's explain view."""

    method: str
    url: str  # never holds a credential
    params: Sequence[tuple[str, str]]
    status: Optional[int] = None
    rows: Optional[int] = None
    total: Optional[int] = None
    seconds: Optional[float] = None
    attempts: int = 1


@dataclass
class Trace:
    """
    Per-request record of the provider's upstream work.  Providers add calls
    with `record`; the engine may send later ones to another request's trace
    (`forward_to`) when a row stream outlives its request.
    """

    calls: list[UpstreamCall] = field(default_factory=list)
    # What the provider applied itself, and what the engine had to evaluate.
    pushed_down: list[str] = field(default_factory=list)
    evaluated: list[str] = field(default_factory=list)
    _forward: Optional["Trace"] = field(default=None, repr=False)

    @property
    def upstream_requests(self) -> int:
        return sum(call.attempts for call in self.calls)

    def record(self, call: UpstreamCall) -> None:
        target = self
        while target._forward is not None:
            target = target._forward
        target.calls.append(call)

    def forward_to(self, other: "Trace") -> None:
        """Record calls from now on in ``other``."""
        self._forward = other


class IQueryResult(Interface):
    """The answer to one `ProviderQuery`."""

    residual = Attribute(
        "Optional[BoundExpr]: the part of the query's filter the provider did not "
        "apply; the engine evaluates it on every row."
    )

    skipped = Attribute(
        "int: how many of the query's ``skip`` rows the provider left out itself, "
        "only ever when ``residual`` is None (optional: 0 when absent)."
    )

    def batches() -> AsyncIterator[RowBatch]:
        """
        The rows, batch by batch.  The engine may stop iterating early; the
        provider must then release whatever it holds (``aclose`` is called).
        """

    def count() -> Any:
        """
        A Deferred (or coroutine) firing with the number of rows that match the
        pushed-down filter when the provider can tell it without reading every
        row, or None when it cannot.  Only meaningful when ``residual`` is None.
        """


class IProviderSession(Interface):
    """One caller's view of a provider, for the duration of one request."""

    def model() -> Any:
        """A Deferred firing with the `Model` this caller sees."""

    def query(query: ProviderQuery) -> Any:
        """A Deferred firing with an `IQueryResult`."""


class IProvider(Interface):
    """A configured provider, shared by all requests."""

    realm = Attribute("str: the realm of the Basic authentication challenge")

    def open_session(credentials: Optional[Credentials], trace: Trace) -> IProviderSession:
        """
        A session for these credentials.  Raise `odata_klein.errors.Unauthorized`
        when they are missing or of a form the provider does not accept; a
        rejected secret is reported later, by the backend, as Unauthorized too.
        """

    def close() -> Any:
        """Release pooled connections; a Deferred or None."""


@dataclass(frozen=True)
class RunningProvider:
    """A started provider, what to tell the administrator, and how to stop it."""

    provider: IProvider
    announcements: Sequence[str] = ()
    # Demo mode: label -> token, offered by the console with one click.
    demo_tokens: Mapping[str, str] = field(default_factory=dict)
    # The user name clients send with Basic authentication, for the console's hints.
    basic_user: Optional[str] = None


class IProviderFactory(Interface):
    """
    The plugin object, found by `twisted.plugin.getPlugins` in the
    ``odata_klein_plugins`` package.
    """

    name = Attribute("str: the provider's name, as in 'twist odata --provider NAME'")
    description = Attribute("str: one line for --help")
    option_parameters = Attribute(
        "Sequence of usage.Options optParameters entries: the provider's own options"
    )
    option_flags = Attribute("Sequence of usage.Options optFlags entries")

    def start(reactor: Any, options: Mapping[str, Any]) -> Any:
        """
        A Deferred (or coroutine) firing with a `RunningProvider` configured
        from the command-line options; ``provider.close()`` stops all it started.
        """


__all__ = [
    "Row",
    "Cursor",
    "Credentials",
    "NavigationSource",
    "ProviderQuery",
    "RowBatch",
    "UpstreamCall",
    "Trace",
    "IQueryResult",
    "IProviderSession",
    "IProvider",
    "IProviderFactory",
    "RunningProvider",
    "Model",
]
