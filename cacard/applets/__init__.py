"""The applets of a CAC card, one concept per module: what every applet is (:mod:`.applet`),
what every CAC applet does (:mod:`.cac`), access rules (:mod:`.acr`), and the applets
themselves: PKI (:mod:`.pki`), CCC (:mod:`.ccc`), ACA (:mod:`.aca`), data and empty containers
(:mod:`.containers`), GlobalPlatform (:mod:`.gp`) and Microsoft (:mod:`.msft`)."""

from .aca import ACAApplet
from .applet import Applet, CardServices, Selection
from .cac import CACApplet, CardObject
from .containers import DataObjectId
from .gp import GPApplet
from .msft import MSFTApplet
from .pki import PKIApplet

__all__ = [
    "ACAApplet",
    "Applet",
    "CACApplet",
    "CardObject",
    "CardServices",
    "DataObjectId",
    "GPApplet",
    "MSFTApplet",
    "PKIApplet",
    "Selection",
]
