"""``twist odata-clicktime``: the OData service over ClickTime."""

from odata_klein.tap import ProviderServiceMaker

odata_clicktime = ProviderServiceMaker(
    "odata-clicktime",
    provider="clicktime",
    description="An OData v4 service over the ClickTime REST API, for Power BI, Excel and Tableau.",
)
