"""The FHIR R4 layer (docs/design.md §6): client, auth, mappings to entities, bundle/NDJSON
import."""
