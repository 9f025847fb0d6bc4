"""The ClickTime provider: OData over the ClickTime REST API v2."""
