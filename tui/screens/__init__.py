"""Modal screens: every choice the operator makes goes through `ChoiceModal`."""

from .access import AccessModal
from .choice import Choice, ChoiceModal
from .detail import DetailScreen, activity_detail, log_line_detail
from .faults import Fault, fault_menu
from .help import HelpScreen
from .model_picker import model_picker
from .owned import owned_by_another
from .quit_confirm import hand_back_confirm, quit_confirm

__all__ = [
    "AccessModal",
    "Choice",
    "ChoiceModal",
    "DetailScreen",
    "Fault",
    "HelpScreen",
    "activity_detail",
    "fault_menu",
    "hand_back_confirm",
    "log_line_detail",
    "model_picker",
    "owned_by_another",
    "quit_confirm",
]
