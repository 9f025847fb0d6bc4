"""Content negotiation, Prefer, skiptokens and credentials: the small parsers of the web layer."""

from __future__ import annotations

import base64
from typing import Optional

import pytest

from odata_klein.auth import MAX_CREDENTIALS_LENGTH, credentials_from_header
from odata_klein.compression import accepts_gzip
from odata_klein.errors import BadRequest, NotAcceptable, Unauthorized
from odata_klein.negotiation import (
    JsonFormat,
    MetadataFormat,
    accepts_text,
    check_max_version,
    negotiate_json,
    negotiate_metadata,
)
from odata_klein.preferences import parse_prefer
from odata_klein.skiptoken import SkipToken, decode_skiptoken, encode_skiptoken

POWER_BI_ACCEPT = (
    "application/json;odata.metadata=minimal;q=1.0, application/json;odata=minimalmetadata;q=0.9, "
    "application/atomsvc+xml;q=0.8, application/atom+xml;q=0.8, application/xml;q=0.7, text/plain;q=0.7"
)


def test_power_bi_gets_minimal_json_for_data_and_xml_for_metadata() -> None:
    assert negotiate_json(None, POWER_BI_ACCEPT) == JsonFormat("minimal")
    assert negotiate_metadata(None, POWER_BI_ACCEPT) is MetadataFormat.XML


@pytest.mark.parametrize(
    "format_option, accept, expected",
    [
        ("json", None, MetadataFormat.JSON),
        ("application/json", "application/xml", MetadataFormat.JSON),
        ("xml", None, MetadataFormat.XML),
        (None, "application/json", MetadataFormat.JSON),
        (None, "application/json, */*;q=0.1", MetadataFormat.XML),
        (None, "application/json, application/*;q=0.1", MetadataFormat.XML),
        (None, None, MetadataFormat.XML),
        (None, "*/*", MetadataFormat.XML),
    ],
)
def test_metadata_json_only_when_unambiguous(
    format_option: Optional[str], accept: Optional[str], expected: MetadataFormat
) -> None:
    assert negotiate_metadata(format_option, accept) is expected


def test_metadata_refuses_what_it_cannot_give() -> None:
    with pytest.raises(NotAcceptable):
        negotiate_metadata(None, "text/html")
    with pytest.raises(NotAcceptable):
        negotiate_metadata("atom", None)


@pytest.mark.parametrize(
    "format_option, accept, expected",
    [
        (None, "application/json;odata.metadata=full", JsonFormat("full")),
        (None, "application/json;odata.metadata=none;IEEE754Compatible=true", JsonFormat("none", True)),
        ("application/json;odata.metadata=full", "text/html", JsonFormat("full")),
        ("JSON", None, JsonFormat("minimal")),
        (None, "*/*", JsonFormat("minimal")),
        (None, "text/html, application/*;q=0.5", JsonFormat("minimal")),
    ],
)
def test_json_format(format_option: Optional[str], accept: Optional[str], expected: JsonFormat) -> None:
    assert negotiate_json(format_option, accept) == expected


@pytest.mark.parametrize(
    "format_option, accept",
    [(None, "application/xml"), (None, "application/json;q=0"), ("xml", None), (None, "application/json;odata.metadata=verbose")],
)
def test_json_not_acceptable(format_option: Optional[str], accept: Optional[str]) -> None:
    with pytest.raises(NotAcceptable):
        negotiate_json(format_option, accept)


def test_format_must_be_a_format() -> None:
    with pytest.raises(BadRequest):
        negotiate_json("*/*", None)


def test_text_for_count() -> None:
    accepts_text(None, POWER_BI_ACCEPT)
    accepts_text(None, None)
    with pytest.raises(NotAcceptable):
        accepts_text(None, "application/json")


def test_max_version() -> None:
    check_max_version(None)
    check_max_version("4.0")
    check_max_version("4.01")
    with pytest.raises(NotAcceptable):
        check_max_version("3.0")
    with pytest.raises(BadRequest):
        check_max_version("four")


def test_content_type_names_the_format() -> None:
    assert JsonFormat("full", True).content_type.startswith(
        "application/json;odata.metadata=full;odata.streaming=true;IEEE754Compatible=true"
    )


def test_prefer_maxpagesize() -> None:
    assert parse_prefer("odata.maxpagesize=100").max_page_size == 100
    assert parse_prefer('respond-async, maxpagesize="50"').max_page_size == 50
    assert parse_prefer("odata.maxpagesize=abc").max_page_size is None
    assert parse_prefer("odata.maxpagesize=0").max_page_size is None
    assert parse_prefer(None).max_page_size is None


def test_gzip_acceptance() -> None:
    assert accepts_gzip("gzip, deflate")
    assert accepts_gzip("deflate, GZIP;q=0.5")
    assert not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("deflate, br")
    assert not accepts_gzip("")


def test_skiptoken_round_trip_and_validation() -> None:
    token = SkipToken(cursor=12345, page_size=100)
    text = encode_skiptoken(token)
    assert "=" not in text and "+" not in text and "/" not in text
    assert decode_skiptoken(text, 1000) == token
    for bad in ("", "!!!", "bm90IGpzb24", encode_skiptoken(SkipToken(1, 5000)), "x" * 5000):
        with pytest.raises(BadRequest) as raised:
            decode_skiptoken(bad, 1000)
        assert raised.value.target == "$skiptoken"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credentials() -> None:
    assert credentials_from_header(None) is None
    basic = credentials_from_header(_basic("clicktime", "s3cret:with:colons"))
    assert basic is not None and (basic.scheme, basic.user, basic.secret) == ("basic", "clicktime", "s3cret:with:colons")
    bearer = credentials_from_header("bearer abc")
    assert bearer is not None and (bearer.scheme, bearer.secret) == ("bearer", "abc")
    assert "s3cret" not in repr(basic)
    for bad in ("Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(), "Digest x", "Bearer "):
        with pytest.raises(Unauthorized) as raised:
            credentials_from_header(bad)
        assert "!!!" not in raised.value.message


def test_credentials_too_long_for_any_upstream_are_refused_before_they_are_passed_on() -> None:
    longest = _basic("clicktime", "t" * 3000)
    assert len(longest) <= MAX_CREDENTIALS_LENGTH and credentials_from_header(longest) is not None
    with pytest.raises(Unauthorized) as raised:
        credentials_from_header(_basic("clicktime", "t" * 200_000))
    assert raised.value.message == f"the credentials are longer than {MAX_CREDENTIALS_LENGTH} characters"
