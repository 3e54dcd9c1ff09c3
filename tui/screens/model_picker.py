"""`m`: pick the model for the next requests, seeing each one's health."""

from __future__ import annotations

from gateway_core.llm import ModelsSnapshot

from ..panels.models import model_health
from .choice import Choice, ChoiceModal


def model_picker(models: ModelsSnapshot) -> ChoiceModal:
    return ChoiceModal(
        "Switch model",
        f"Active: {models.active}. The next message starts with the model you pick; the others stay as failover.",
        [Choice(m.name, model_health(m, m.name == models.active)) for m in models.models],
    )
