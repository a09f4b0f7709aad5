"""Groundwork for a PIV card application (NIST SP 800-73-4 card edge, SP 800-78-4 algorithms):
its data objects, identifiers and property template (:mod:`.objects`), the BER-TLV reader
(:mod:`.ber`) and the 9B management key's authentication (:mod:`.management_key`)."""

from .ber import BerTLV, PIVFormatError
from .management_key import (
    DEFAULT_MANAGEMENT_KEY,
    Answer,
    ManagementKey,
    ManagementKeyAuthentication,
)
from .objects import (
    CHUID,
    PIV_AID,
    PIV_PIX,
    PIV_RID,
    Algorithm,
    ApplicationPropertyTemplate,
    CardCapabilityContainer,
    CertificateObject,
    CertInfo,
    DiscoveryObject,
    KeyHistory,
    KeyReference,
    ObjectTag,
    PinReference,
    PinUsagePolicy,
    PrintedInformation,
    get_data_response,
)

__all__ = [
    "CHUID",
    "DEFAULT_MANAGEMENT_KEY",
    "PIV_AID",
    "PIV_PIX",
    "PIV_RID",
    "Algorithm",
    "Answer",
    "ApplicationPropertyTemplate",
    "BerTLV",
    "CardCapabilityContainer",
    "CertInfo",
    "CertificateObject",
    "DiscoveryObject",
    "KeyHistory",
    "KeyReference",
    "ManagementKey",
    "ManagementKeyAuthentication",
    "ObjectTag",
    "PIVFormatError",
    "PinReference",
    "PinUsagePolicy",
    "PrintedInformation",
    "get_data_response",
]
