"""The service document: the JSON answer at the service root, listing the entity sets."""

from __future__ import annotations

from typing import Any

from .model import Model


def service_document(model: Model, context_url: str) -> dict[str, Any]:
    """
    The service document of ``model``, ready for `json.dumps`.

    ``context_url`` is the absolute ``$metadata`` URL: BI clients reject a
    relative one.  Each entry's ``url`` is relative to the service root,
    which is where clients resolve it.
    """
    return {
        "@odata.context": context_url,
        "value": [
            {"name": entity_set.name, "kind": "EntitySet", "url": entity_set.name}
            for entity_set in model.entity_sets
            if entity_set.include_in_service_document
        ],
    }


__all__ = ["service_document"]
