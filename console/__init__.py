"""
The browser query console of odata-klein, served at ``/console``: an
administrator builds an OData query without knowing the syntax, sees the
rows, and copies a working connection into Power BI, Excel or Tableau.
"""

from .app import Console, console_resource
from .connect import Feed, NotAFeedURL

__all__ = ["Console", "Feed", "NotAFeedURL", "console_resource"]
