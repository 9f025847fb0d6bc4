"""A real HTTP server that behaves like the ClickTime REST API v2, for demos, tests and benchmarks.

``generate_company`` draws a seeded company (``data``), ``Simulator`` serves it as a Klein
app (``app``), ``start_simulator`` listens on a port, and ``Simulator.faults`` makes it
misbehave on chosen requests (``faults``).  ``python -m odata_klein_plugins.clicktime.simulator``
runs one from the command line.
"""

from .app import RecordedRequest, RunningSimulator, Simulator, start_simulator
from .data import (
    ADMIN,
    MANAGER,
    STANDARD,
    Client,
    Company,
    CustomFieldDefinition,
    Division,
    Job,
    Task,
    TimeEntry,
    Timesheet,
    User,
    generate_company,
)
from .faults import FaultRule, Faults, FiredFault

__all__ = [
    "ADMIN",
    "MANAGER",
    "STANDARD",
    "Client",
    "Company",
    "CustomFieldDefinition",
    "Division",
    "FaultRule",
    "Faults",
    "FiredFault",
    "Job",
    "RecordedRequest",
    "RunningSimulator",
    "Simulator",
    "Task",
    "TimeEntry",
    "Timesheet",
    "User",
    "generate_company",
    "start_simulator",
]
