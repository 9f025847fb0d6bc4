"""The ClickTime model: valid CSDL, every documented field typed, and rows converted exactly."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest

from csdl_validation import validate_xml_40, validate_xml_401
from odata_klein import csdl
from odata_klein.errors import BadGateway
from odata_klein.model import Model
from odata_klein_plugins.clicktime.rows import record_reader
from odata_klein_plugins.clicktime.schema import CustomFieldDefinition, build_model

DEFINITIONS = [
    CustomFieldDefinition("TimeEntry", "Phase", "Project phase", "Pull-down"),
    CustomFieldDefinition("TimeEntry", "Billable?", "Billable", "Checkbox"),
    CustomFieldDefinition("Job", "Budget", "Budget", "Number"),
    CustomFieldDefinition("Job", "Kickoff", "Kick-off", "Date"),
]


@pytest.mark.parametrize("sees_rates", [True, False])
def test_model_validates_against_both_schemas(sees_rates: bool) -> None:
    xml = csdl.metadata_xml(build_model(DEFINITIONS, sees_rates=sees_rates))
    validate_xml_40(xml)
    validate_xml_401(xml)


def test_rates_only_for_callers_who_see_them() -> None:
    def names(model: Model, type_name: str) -> set[str]:
        entity_type = model.entity_type(f"ClickTime.{type_name}")
        assert entity_type is not None
        return {p.name for p in entity_type.properties}

    with_rates, without = build_model([], sees_rates=True), build_model([], sees_rates=False)
    for type_name in ("TimeEntry", "User", "Job", "Client", "Task"):
        assert "BillingRate" in names(with_rates, type_name)
        assert not {"BillingRate", "CostRate"} & names(without, type_name)


def test_custom_field_columns() -> None:
    model = build_model(DEFINITIONS, sees_rates=True)
    entry = model.entity_type("ClickTime.TimeEntry")
    assert entry.property("CustomField_Phase").type == "Edm.String"
    assert entry.property("CustomField_Billable_").type == "Edm.Boolean"
    job = model.entity_type("ClickTime.Job")
    assert job.property("CustomField_Budget").type == "Edm.Decimal"
    assert job.property("CustomField_Kickoff").type == "Edm.Date"
    for entity_type in model.entity_types:
        assert entity_type.property("CustomFields").type == "ClickTime.CustomFields"
        assert entity_type.property("CustomFieldsStr").type == "Edm.String"


def test_navigation_and_foreign_keys() -> None:
    model = build_model([], sees_rates=True)
    entry = model.entity_type("ClickTime.TimeEntry")
    assert {n.name for n in entry.navigation_properties} == {"User", "Job", "Task"}
    assert {"UserID", "JobID", "TaskID"} <= {p.name for p in entry.properties}
    assert {n.name for n in model.entity_type("ClickTime.Job").navigation_properties} == {"Client", "ProjectManager"}
    timesheet = model.entity_type("ClickTime.Timesheet")
    assert timesheet.navigation_property("TimeEntries").collection
    assert model.entity_set("Timesheets").navigation_bindings == {"User": "Users", "TimeEntries": "TimeEntries"}


def test_row_conversion() -> None:
    model = build_model(DEFINITIONS, sees_rates=True)
    converter = record_reader(model.entity_type("ClickTime.TimeEntry"), [d for d in DEFINITIONS if d.entity_type == "TimeEntry"])
    row = converter.convert(
        {
            "ID": "abc", "Date": "2026-05-06", "Hours": Decimal("7.25"), "BreakTime": "0.5",
            "StartTime": "08:30", "EndTime": None, "Comment": 'He said "hi" <b>', "JobID": 12,
            "CustomFields": {"Phase": "Design", "Billable?": True, "Other": Decimal("1.5")},
        }
    )
    assert row["Date"] == datetime.date(2026, 5, 6)
    assert row["Hours"] == Decimal("7.25") and row["BreakTime"] == Decimal("0.5")
    assert row["StartTime"] == datetime.time(8, 30) and row["EndTime"] is None
    assert row["JobID"] == "12" and row["UserID"] is None
    assert row["CustomField_Phase"] == "Design" and row["CustomField_Billable_"] is True
    assert row["CustomFieldsStr"] == '{"Phase":"Design","Billable?":true,"Other":1.5}'


def test_custom_fields_keep_their_order_and_types_whatever_comes() -> None:
    model = build_model(DEFINITIONS, sees_rates=True)
    converter = record_reader(model.entity_type("ClickTime.TimeEntry"), [d for d in DEFINITIONS if d.entity_type == "TimeEntry"])
    records = [
        {"Phase": "Design", "Billable?": True},
        {"Billable?": False, "Phase": None},
        {"Phase": "Büro \"A\"", "Billable?": "", "Nested": {"a": [1, Decimal("2.50")]}},
        {},
        {"Billable?": True, "Phase": "x", 7: "odd key"},
    ]
    texts = [converter.convert({"ID": "a", "CustomFields": record})["CustomFieldsStr"] for record in records]
    assert texts == [
        '{"Phase":"Design","Billable?":true}',
        '{"Billable?":false,"Phase":null}',
        '{"Phase":"Büro \\"A\\"","Billable?":"","Nested":{"a":[1,2.50]}}',
        "{}",
        '{"Billable?":true,"Phase":"x","7":"odd key"}',
    ]
    # The typed columns read the same fields, in whatever order they came.
    second = converter.convert({"ID": "a", "CustomFields": records[1]})
    assert (second["CustomField_Phase"], second["CustomField_Billable_"]) == (None, False)


def test_unreadable_upstream_values_are_bad_gateway() -> None:
    model = build_model([], sees_rates=True)
    converter = record_reader(model.entity_type("ClickTime.TimeEntry"), [])
    for record in ({"ID": "a", "Date": "yesterday"}, {"ID": "a", "Hours": "lots"}, {"ID": "a", "CustomFields": []}):
        with pytest.raises(BadGateway):
            converter.convert(record)
    client = record_reader(model.entity_type("ClickTime.Client"), [])
    naive = client.convert({"ID": "c", "CreatedDate": "2026-01-02T03:04:05"})
    assert naive["CreatedDate"] == datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
