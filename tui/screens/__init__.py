"""Modal screens: every choice the operator makes goes through `ChoiceModal`."""

from .choice import Choice, ChoiceModal
from .faults import Fault, fault_menu
from .help import HelpScreen
from .model_picker import model_picker
from .owned import owned_by_another
from .quit_confirm import hand_back_confirm, quit_confirm

__all__ = [
    "Choice",
    "ChoiceModal",
    "Fault",
    "HelpScreen",
    "fault_menu",
    "hand_back_confirm",
    "model_picker",
    "owned_by_another",
    "quit_confirm",
]
