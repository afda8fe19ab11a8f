"""Connectors: how data is read from each kind of data source (FHIR, custom REST, file drop)."""
