"""odata_klein: a generic, plugin-based OData v4 service on Twisted and Klein."""
