"""
The ClickTime entity model as OData sees it.

Every field ClickTime's v2 API returns becomes a typed property; foreign-key
columns stay (Tableau reads flat sets) and navigation properties are added
beside them.  Custom fields appear three ways: ``CustomFields`` (the nested
object, as an open complex type), ``CustomFieldsStr`` (the same JSON as a
string), and one typed ``CustomField_<Name>`` column per definition the
caller's company has, so BI users get real columns without parsing JSON.

The model depends on the caller: custom field definitions differ between
companies, and billing and cost rates are left out of the model of a STANDARD
user, whom ClickTime never shows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from odata_klein.model import (
    VARIABLE_SCALE,
    ComplexType,
    Edm,
    EntitySet,
    EntityType,
    Model,
    NavigationProperty,
    Property,
    ReferentialConstraint,
)

NAMESPACE = "ClickTime"
CONTAINER = "ClickTimeService"
CUSTOM_FIELDS = "CustomFields"
CUSTOM_FIELDS_STR = "CustomFieldsStr"
CUSTOM_FIELD_PREFIX = "CustomField_"
CUSTOM_FIELDS_TYPE = f"{NAMESPACE}.CustomFields"
RATE_FIELDS = frozenset({"BillingRate", "CostRate"})

_S, _B, _D, _DEC, _T, _DTO = (
    Edm.STRING.value,
    Edm.BOOLEAN.value,
    Edm.DATE.value,
    Edm.DECIMAL.value,
    Edm.TIME_OF_DAY.value,
    Edm.DATE_TIME_OFFSET.value,
)

# (property, type) in ClickTime's field order; every entity also gets the
# custom field properties.  IDs are opaque strings.
_FIELDS: Mapping[str, Sequence[tuple[str, str]]] = {
    "TimeEntry": (
        ("ID", _S), ("Date", _D), ("Hours", _DEC), ("BreakTime", _DEC), ("StartTime", _T),
        ("EndTime", _T), ("Comment", _S), ("JobID", _S), ("TaskID", _S), ("UserID", _S),
        ("BillingRate", _DEC), ("CostRate", _DEC),
    ),
    "User": (
        ("ID", _S), ("Name", _S), ("Email", _S), ("IsActive", _B), ("StartDate", _D),
        ("EndDate", _D), ("EmployeeNumber", _S), ("Notes", _S), ("PayrollType", _S),
        ("Role", _S), ("AccountingPackageID", _S), ("DivisionID", _S), ("EmploymentTypeID", _S),
        ("DefaultTaskID", _S), ("TimesheetApproverID", _S), ("ExpenseApproverID", _S),
        ("TimeOffApproverID", _S), ("SecurityLevel", _S), ("CostModel", _S), ("CostRate", _DEC),
        ("BillingRate", _DEC), ("UseCompanyBillingRate", _B), ("EnableBreakTime", _B),
        ("RequireComments", _B), ("RequireStartEndTime", _B), ("SubjectToTimesheetApproval", _B),
    ),
    "Job": (
        ("ID", _S), ("Name", _S), ("JobNumber", _S), ("ClientID", _S), ("ProjectManagerID", _S),
        ("Notes", _S), ("AccountingPackageID", _S), ("ListDisplayText", _S), ("StartDate", _D),
        ("EndDate", _D), ("IsActive", _B), ("IsBillable", _B), ("TimeRequiresApproval", _B),
        ("UseCompanyBillingRate", _B), ("BillingRate", _DEC), ("SecondaryBillingRateMode", _S),
    ),
    "Client": (
        ("ID", _S), ("Name", _S), ("ShortName", _S), ("ClientNumber", _S), ("Notes", _S),
        ("AccountingPackageID", _S), ("ListDisplayText", _S), ("IsActive", _B),
        ("BillingRate", _DEC), ("SecondaryBillingRateMode", _S), ("CreatedDate", _DTO),
    ),
    "Task": (
        ("ID", _S), ("Name", _S), ("TaskCode", _S), ("Notes", _S), ("AccountingPackageID", _S),
        ("ListDisplayText", _S), ("IsActive", _B), ("IsBillable", _B),
        ("UseCompanyBillingRate", _B), ("BillingRate", _DEC),
    ),
    "Division": (
        ("ID", _S), ("Name", _S), ("Notes", _S), ("AccountingPackageID", _S), ("IsActive", _B),
    ),
    "Timesheet": (
        ("ID", _S), ("UserID", _S), ("StartDate", _D), ("EndDate", _D), ("Status", _S),
        ("HasBeenSubmitted", _B), ("SubmittedByUserID", _S), ("ApprovedByUserID", _S),
        ("RejectedByUserID", _S),
    ),
}


@dataclass(frozen=True)
class EntitySetInfo:
    """How one entity set maps onto ClickTime."""

    set_name: str
    type_name: str
    # The path segment of the list endpoint, e.g. "TimeEntries".
    endpoint: str
    # The most rows ClickTime returns per list request.
    page_limit: int
    # Whether a STANDARD user reads this set through /Me (their own records).
    own_records_only: bool = False
    # ClickTime's fixed order of the list, as far as the service relies on it
    # (model.EntitySet.natural_order).  Only dates: its orders by name, and
    # its ties broken by ID, follow a text collation OData's $orderby does not.
    natural_order: tuple[tuple[str, bool], ...] = ()


ENTITY_SETS: tuple[EntitySetInfo, ...] = (
    EntitySetInfo("TimeEntries", "TimeEntry", "TimeEntries", 500, own_records_only=True, natural_order=(("Date", True),)),
    EntitySetInfo("Users", "User", "Users", 1000),
    EntitySetInfo("Jobs", "Job", "Jobs", 1000),
    EntitySetInfo("Clients", "Client", "Clients", 1000),
    EntitySetInfo("Tasks", "Task", "Tasks", 1000),
    EntitySetInfo("Divisions", "Division", "Divisions", 1000),
    EntitySetInfo(
        "Timesheets", "Timesheet", "Timesheets", 1000, own_records_only=True, natural_order=(("StartDate", True),)
    ),
)

SET_INFO: Mapping[str, EntitySetInfo] = {info.set_name: info for info in ENTITY_SETS}

_DESCRIPTIONS = {
    "TimeEntry": "Time entered by users against a job and task.",
    "User": "A person in the ClickTime company.",
    "Job": "A project that time is entered against.",
    "Client": "A customer that jobs belong to.",
    "Task": "A kind of work, such as Design or Meetings.",
    "Division": "A part of the company that users belong to.",
    "Timesheet": "A user's timesheet for one period, with its approval status.",
}


def _single(name: str, target: str, fk: str) -> NavigationProperty:
    return NavigationProperty(
        name=name,
        target_type=f"{NAMESPACE}.{target}",
        constraints=(ReferentialConstraint(fk, "ID"),),
    )


# (entity type, navigation property, target entity set)
_NAVIGATION: Mapping[str, Sequence[tuple[NavigationProperty, str]]] = {
    "TimeEntry": (
        (_single("User", "User", "UserID"), "Users"),
        (_single("Job", "Job", "JobID"), "Jobs"),
        (_single("Task", "Task", "TaskID"), "Tasks"),
    ),
    "Job": (
        (_single("Client", "Client", "ClientID"), "Clients"),
        (_single("ProjectManager", "User", "ProjectManagerID"), "Users"),
    ),
    "User": ((_single("Division", "Division", "DivisionID"), "Divisions"),),
    "Timesheet": (
        (_single("User", "User", "UserID"), "Users"),
        (
            NavigationProperty(
                name="TimeEntries", target_type=f"{NAMESPACE}.TimeEntry", collection=True, nullable=False
            ),
            "TimeEntries",
        ),
    ),
}

# ClickTime's custom field data types, normalised (lower case, letters only).
_CUSTOM_FIELD_TYPES = {
    "text": _S,
    "string": _S,
    "number": _DEC,
    "numeric": _DEC,
    "decimal": _DEC,
    "date": _D,
    "pulldown": _S,
    "dropdown": _S,
    "list": _S,
    "checkbox": _B,
    "boolean": _B,
}


@dataclass(frozen=True)
class CustomFieldDefinition:
    """One custom field of one entity type, as ClickTime defines it."""

    entity_type: str  # OData entity type name, e.g. "TimeEntry"
    name: str  # ClickTime's internal Name: the key inside CustomFields
    display_name: str
    data_type: str

    @property
    def edm_type(self) -> str:
        normalised = re.sub(r"[^a-z]", "", self.data_type.lower())
        return _CUSTOM_FIELD_TYPES.get(normalised, _S)

    @property
    def property_name(self) -> str:
        return CUSTOM_FIELD_PREFIX + re.sub(r"\W", "_", self.name, flags=re.ASCII)


# ClickTime's EntityType values name entities in the singular or plural; both map here.
_ENTITY_TYPE_ALIASES = {
    alias.lower(): info.type_name
    for info in ENTITY_SETS
    for alias in (info.type_name, info.set_name, info.endpoint)
}


def entity_type_for_definition(value: str) -> Optional[str]:
    return _ENTITY_TYPE_ALIASES.get(re.sub(r"\s", "", value).lower())


def _custom_field_properties(definitions: Sequence[CustomFieldDefinition]) -> list[Property]:
    properties = [
        Property(
            CUSTOM_FIELDS, CUSTOM_FIELDS_TYPE,
            description="The entity's custom fields as ClickTime returns them (a JSON object).",
        ),
        Property(CUSTOM_FIELDS_STR, _S, description="CustomFields as a JSON string."),
    ]
    seen = set()
    for definition in definitions:
        if definition.property_name in seen:
            continue
        seen.add(definition.property_name)
        properties.append(
            Property(
                definition.property_name,
                definition.edm_type,
                scale=VARIABLE_SCALE if definition.edm_type == _DEC else None,
                description=f"Custom field {definition.display_name!r} ({definition.name}).",
            )
        )
    return properties


def _property(name: str, type_name: str, key: bool) -> Property:
    return Property(
        name,
        type_name,
        nullable=not key,
        scale=VARIABLE_SCALE if type_name == _DEC else None,
    )


def build_model(definitions: Sequence[CustomFieldDefinition], *, sees_rates: bool) -> Model:
    """The model one caller sees."""
    entity_types = []
    for info in ENTITY_SETS:
        type_name = info.type_name
        properties = [
            _property(name, type_name_, key=name == "ID")
            for name, type_name_ in _FIELDS[type_name]
            if sees_rates or name not in RATE_FIELDS
        ]
        properties += _custom_field_properties([d for d in definitions if d.entity_type == type_name])
        entity_types.append(
            EntityType(
                name=type_name,
                key=("ID",),
                properties=tuple(properties),
                navigation_properties=tuple(nav for nav, _ in _NAVIGATION.get(type_name, ())),
                description=_DESCRIPTIONS[type_name],
            )
        )
    entity_sets = tuple(
        EntitySet(
            name=info.set_name,
            entity_type=f"{NAMESPACE}.{info.type_name}",
            navigation_bindings={nav.name: target for nav, target in _NAVIGATION.get(info.type_name, ())},
            natural_order=info.natural_order,
        )
        for info in ENTITY_SETS
    )
    return Model(
        namespace=NAMESPACE,
        container_name=CONTAINER,
        entity_types=tuple(entity_types),
        entity_sets=entity_sets,
        complex_types=(ComplexType("CustomFields", open=True),),
    )
