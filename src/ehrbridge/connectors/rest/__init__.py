"""The custom REST connector: ``kind: rest`` data sources, configured, not coded.

See docs/rest-connector.md.
"""
