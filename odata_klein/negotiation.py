"""
Content negotiation: which format and metadata level a request gets.

Inputs are the ``$format`` option, the ``Accept`` header and the
``OData-MaxVersion`` header; the answer is a `JsonFormat` for data responses
or a `MetadataFormat` for ``$metadata``.  Anything that cannot be met is a 406.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional, Sequence

from .errors import BadRequest, NotAcceptable

ODATA_VERSION = "4.0"

_METADATA_LEVELS = ("minimal", "full", "none")


@dataclass(frozen=True)
class MediaRange:
    type: str
    subtype: str
    params: tuple[tuple[str, str], ...]
    quality: float

    def param(self, name: str) -> Optional[str]:
        for key, value in self.params:
            if key == name:
                return value
        return None

    def matches(self, type_: str, subtype: str) -> bool:
        return self.type in ("*", type_) and self.subtype in ("*", subtype)


def parse_media_ranges(header: str) -> list[MediaRange]:
    """Parse an Accept header (or a ``$format`` media type) leniently, highest quality first."""
    ranges = []
    for order, item in enumerate(header.split(",")):
        parts = [part.strip() for part in item.split(";")]
        full_type = parts[0].lower()
        if not full_type:
            continue
        type_, _, subtype = full_type.partition("/")
        params: list[tuple[str, str]] = []
        quality = 1.0
        for part in parts[1:]:
            key, _, value = part.partition("=")
            key, value = key.strip().lower(), value.strip().strip('"')
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
            elif key:
                params.append((key, value.lower()))
        ranges.append((MediaRange(type_, subtype or "*", tuple(params), quality), order))
    ranges.sort(key=lambda pair: (-pair[0].quality, pair[1]))
    return [media_range for media_range, _ in ranges]


@dataclass(frozen=True)
class JsonFormat:
    """How to write a JSON response."""

    metadata: str = "minimal"  # minimal | full | none
    ieee754_compatible: bool = False

    @property
    def content_type(self) -> str:
        return (
            f"application/json;odata.metadata={self.metadata};odata.streaming=true;"
            f"IEEE754Compatible={'true' if self.ieee754_compatible else 'false'};charset=utf-8"
        )


class MetadataFormat(Enum):
    XML = "application/xml"
    JSON = "application/json"


def _json_format_from(media_range: MediaRange) -> JsonFormat:
    metadata = media_range.param("odata.metadata") or "minimal"
    if metadata not in _METADATA_LEVELS:
        raise NotAcceptable(
            f"odata.metadata={metadata} is not supported; use minimal, full or none",
            target="Accept",
        )
    ieee = (media_range.param("ieee754compatible") or "false") == "true"
    return JsonFormat(metadata=metadata, ieee754_compatible=ieee)


def _format_option_range(format_option: str) -> MediaRange:
    lowered = format_option.strip().lower()
    if lowered == "json":
        lowered = "application/json"
    elif lowered == "xml":
        lowered = "application/xml"
    elif lowered == "atom":
        lowered = "application/atom+xml"
    ranges = parse_media_ranges(lowered)
    if len(ranges) != 1 or "*" in (ranges[0].type, ranges[0].subtype):
        raise BadRequest(f"$format={format_option!r} is not a format or media type", target="$format")
    return ranges[0]


def check_max_version(max_version: Optional[str]) -> None:
    """A client that cannot read OData 4.0 gets a 406 rather than a response it would misread."""
    if max_version is None:
        return
    try:
        major = int(max_version.strip().split(".")[0])
    except ValueError:
        raise BadRequest(f"OData-MaxVersion {max_version!r} is not a version", target="OData-MaxVersion")
    if major < 4:
        raise NotAcceptable(
            f"this service speaks OData {ODATA_VERSION}; the request allows at most {max_version}",
            target="OData-MaxVersion",
        )


def negotiate_json(format_option: Optional[str], accept: Optional[str]) -> JsonFormat:
    """The JSON format for a data response (service document, entities, properties)."""
    if format_option is not None:
        media_range = _format_option_range(format_option)
        if not media_range.matches("application", "json"):
            raise NotAcceptable(
                f"$format={format_option} is not available here: this service answers in JSON",
                target="$format",
            )
        return _json_format_from(media_range)
    if not accept:
        return JsonFormat()
    for media_range in parse_media_ranges(accept):
        if media_range.quality > 0 and media_range.matches("application", "json"):
            return _json_format_from(media_range)
    raise NotAcceptable(
        "this service answers in application/json, which the Accept header does not allow",
        target="Accept",
    )


_XML_TYPES: Sequence[tuple[str, str]] = (("application", "xml"), ("text", "xml"))


def negotiate_metadata(format_option: Optional[str], accept: Optional[str]) -> MetadataFormat:
    """
    CSDL XML unless JSON is asked for unambiguously.

    Power BI lists JSON first and XML lower in its Accept header yet fails on
    a JSON answer, so JSON is chosen only by ``$format=json`` or an Accept
    header that allows JSON and no XML type at all (wildcards count as XML).
    """
    if format_option is not None:
        media_range = _format_option_range(format_option)
        if media_range.matches("application", "json"):
            return MetadataFormat.JSON
        if any(media_range.matches(*xml) for xml in _XML_TYPES):
            return MetadataFormat.XML
        raise NotAcceptable(f"$metadata is available as XML or JSON, not {format_option}", target="$format")
    if not accept:
        return MetadataFormat.XML
    ranges = [r for r in parse_media_ranges(accept) if r.quality > 0]
    allows_xml = any(r.matches(*xml) for r in ranges for xml in _XML_TYPES)
    allows_json = any(r.matches("application", "json") for r in ranges)
    if allows_xml:
        return MetadataFormat.XML
    if allows_json:
        return MetadataFormat.JSON
    raise NotAcceptable("$metadata is available as application/xml or application/json", target="Accept")


def accepts_text(format_option: Optional[str], accept: Optional[str]) -> None:
    """For ``/$count`` and ``/$value``: plain text must be acceptable."""
    if format_option is not None:
        raise BadRequest("$format does not apply to /$count or /$value", target="$format")
    if not accept:
        return
    for media_range in parse_media_ranges(accept):
        if media_range.quality > 0 and media_range.matches("text", "plain"):
            return
    raise NotAcceptable("this resource is text/plain, which the Accept header does not allow", target="Accept")
