"""
odata_klein: a generic, plugin-based OData v4 service on Twisted and Klein.

What a provider plugin needs is re-exported here: the contract
(`odata_klein.interfaces`), the model it describes its entity sets with
(`odata_klein.model`), reading JSON records (`odata_klein.records`), the
errors it raises (`odata_klein.errors`), and the service that serves it.
"""

from .errors import (
    BadGateway,
    BadRequest,
    ErrorDetail,
    Forbidden,
    GatewayTimeout,
    NotFound,
    NotImplementedYet,
    ODataError,
    ServiceUnavailable,
    Unauthorized,
)
from .interfaces import (
    Credentials,
    Cursor,
    IProvider,
    IProviderFactory,
    IProviderSession,
    IQueryResult,
    NavigationSource,
    ProviderQuery,
    Row,
    RowBatch,
    RunningProvider,
    Trace,
    UpstreamCall,
)
from .model import ComplexType, Edm, EntitySet, EntityType, Model, NavigationProperty, Property, ReferentialConstraint
from .records import RecordField, RecordObject, RecordReader, UnreadableValue
from .service import ODataService

__all__ = [
    "BadGateway",
    "BadRequest",
    "ComplexType",
    "Credentials",
    "Cursor",
    "Edm",
    "EntitySet",
    "EntityType",
    "ErrorDetail",
    "Forbidden",
    "GatewayTimeout",
    "IProvider",
    "IProviderFactory",
    "IProviderSession",
    "IQueryResult",
    "Model",
    "NavigationProperty",
    "NavigationSource",
    "NotFound",
    "NotImplementedYet",
    "ODataError",
    "ODataService",
    "Property",
    "ProviderQuery",
    "RecordField",
    "RecordObject",
    "RecordReader",
    "ReferentialConstraint",
    "Row",
    "RowBatch",
    "RunningProvider",
    "ServiceUnavailable",
    "Trace",
    "Unauthorized",
    "UnreadableValue",
    "UpstreamCall",
]
