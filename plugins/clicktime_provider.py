"""Plugin drop-in: makes the ClickTime provider findable by `twisted.plugin.getPlugins`."""

from odata_klein_plugins.clicktime.factory import ClickTimeProviderFactory

clicktime = ClickTimeProviderFactory()
