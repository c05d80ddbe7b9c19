"""Every analyzer, one per file, in one list (Istio's analyzers/all.go)."""

from __future__ import annotations

from isthmus.analyze.analyzers.ca_certificates import CaCertificateAnalyzer
from isthmus.analyze.analyzers.conflicting_gateways import ConflictingGatewayAnalyzer
from isthmus.analyze.analyzers.conflicting_mesh_hosts import ConflictingMeshGatewayHostsAnalyzer
from isthmus.analyze.analyzers.destination_hosts import DestinationHostAnalyzer
from isthmus.analyze.analyzers.destination_rules import DestinationRuleAnalyzer
from isthmus.analyze.analyzers.gateway_secrets import SecretAnalyzer
from isthmus.analyze.analyzers.gateways import GatewayAnalyzer
from isthmus.analyze.analyzers.mtls_conflict import MTLSPolicyConflictAnalyzer
from isthmus.analyze.analyzers.schema import SchemaAnalyzer
from isthmus.analyze.analyzers.serviceentry_protocols import ConflictingServiceEntryProtocolAnalyzer
from isthmus.analyze.analyzers.subsets import SubsetSelectAnalyzer
from isthmus.analyze.analyzers.unreachable_rules import VirtualServiceRuleAnalyzer
from isthmus.analyze.context import Analyzer

ALL: tuple[Analyzer, ...] = (
    MTLSPolicyConflictAnalyzer(),
    CaCertificateAnalyzer(),
    SubsetSelectAnalyzer(),
    ConflictingGatewayAnalyzer(),
    SecretAnalyzer(),
    SchemaAnalyzer(),
    ConflictingServiceEntryProtocolAnalyzer(),
    ConflictingMeshGatewayHostsAnalyzer(),
    DestinationHostAnalyzer(),
    DestinationRuleAnalyzer(),
    GatewayAnalyzer(),
    VirtualServiceRuleAnalyzer(),
)
