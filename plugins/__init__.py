"""
Entity-set providers for odata_klein, installed as ``odata_klein_plugins``.

Each module directly in this package may hold objects providing
`odata_klein.interfaces.IProviderFactory`; `twisted.plugin.getPlugins`
finds them.
"""
