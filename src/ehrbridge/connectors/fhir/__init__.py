"""The FHIR connector: polling a FHIR R4 server (:mod:`.poller`) and backfilling it through Bulk
Data ``$export`` (:mod:`.backfill`), with what both share in their own modules: the client auth
built from a source's config (:mod:`.auth`) and the version tokens that skip records already
stored (:mod:`.versions`). The poller and the backfill never import each other; the composition
root hands the poller its backfill."""
