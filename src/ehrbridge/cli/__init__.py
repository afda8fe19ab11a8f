"""The command line, ``ehrbridge …``: one module per command group, thin shells over the packages.

``main`` holds the app and the world-model commands (``init``, ``import``, ``patients``,
``status``, ``show``, ``events``, ``rebuild``, ``demo``, ``sandbox``, ``run``); ``fhir``
(``push``, ``backfill``), ``keys`` (``keys``, ``audit``), ``serve`` and ``mcp`` the others.
``errors`` maps the error tree to exit codes once for all of them; ``options`` and
``progress`` are what they share.
"""
