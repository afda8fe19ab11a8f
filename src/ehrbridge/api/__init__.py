"""The agent interface (docs/design.md §10, §11): ambient, queried and extracted channels over
HTTP and MCP, with API keys, roles, workspace isolation and an audit trail.

::

    ports.py      who is asking (Principal, roles), the audit record, the key and audit ports
    permissions.py  what each role may do; the write scope and voice-level checks
    models.py     the requests and responses (pydantic): the HTTP and MCP schemas
    outboxmodels.py  the operators' outbox routes' requests and responses
    sync.py       the sync status per sink of what the agent heard or an operator set
    ambient.py    caller identification by phone and the patient's context
    prompt.py     the context as prompt-ready text within a character budget
    queried.py    entity and patient search through the lookup index, timelines
    slots.py      free appointment slots from Slot and Schedule entities, following the log
    extracted.py  voice writes, transcripts (Call entities) and bookings, idempotent
    service.py    AgentService: every operation authorised, workspace-scoped and audited
    keys.py       API keys as strings: format, generation, hashing, verification
    storage.py    keys and the audit trail on the world model's database (the opener, the cache)
    sqlite.py, postgres.py   the two adapters of the key and audit ports
    http.py       the HTTP routes (FastAPI) over the service; edge.py the middleware in front
                  (auth, body limit, request ids, PHI-free log line); problems.py problem+json
    serve.py      the HTTP API's server processes, with MCP mounted at /mcp (``ehrbridge
                  serve`` is :mod:`ehrbridge.cli.serve`)
    mcptools.py   the operations as MCP tools; mcp.py the streamable HTTP and stdio servers
                  (``ehrbridge mcp`` is :mod:`ehrbridge.cli.mcp`)
"""
