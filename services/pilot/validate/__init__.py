"""Pilot's validation of submitted config: YAML or JSON text in, typed resources plus every problem out.

    decode_documents(text, default_namespace=, limits=) -> (resources, errors, warnings)   decode.py
    subset_warnings(submitted, stored) -> [ConfigError]                                   references.py
    gateway_warnings(submitted, stored) -> [ConfigError]                                  references.py
    placement_warnings(submitted, stored, root_namespace) -> [ConfigError]     peer_authentication.py

Layout, each module importing only those below it (tests/test_import_contracts.py holds it so):
  decode.py          the entry: parse and limits (runtime/documents.py, shared with the CLI), envelope, shape, then the validator of the document's kind
  references.py      across resources: VirtualService subsets no DestinationRule defines, Gateways that do not
                     exist (warnings)
  virtual_service.py, destination_rule.py, service_entry.py, workload_entry.py, workload_group.py, ratelimit.py,
  peer_authentication.py, authorization_policy.py, request_authentication.py, telemetry.py, gateway.py
                     one per kind; shaping.py and resilience.py check parts of a VirtualService's HTTP rule,
                     client_tls.py a DestinationRule's tls at any level
  schema.py          every field against the msgspec Struct of the kind
  checks.py          checks every kind shares: host names, ports, labels, header names, string matches
  durations.py, values.py   field values read the same way by validation and by the compilers
  jwks.py            a JSON Web Key Set, checked inline at apply and when pilot fetches a jwksUri
  findings.py        the error/warning record with its path (Istio's Validation/AppendValidation)
The compilers (services/pilot/compile/) may import the leaves findings, checks, durations and values,
nothing else from here.
"""

from services.pilot.validate.decode import decode_documents
from services.pilot.validate.peer_authentication import placement_warnings
from services.pilot.validate.references import gateway_warnings, subset_warnings

__all__ = ["decode_documents", "gateway_warnings", "placement_warnings", "subset_warnings"]
