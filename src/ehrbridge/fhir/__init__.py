"""The FHIR R4 layer (DESIGN §6): client, auth, mappings to entities, bundle/NDJSON import."""
