"""The code pipeline looks its methods up in the core registry (composedft.methods)."""
from __future__ import annotations

import dataclasses

import pytest

from composedft.config import ConfigError
from composedft.methods import METHODS, Method, register_method
from simulations.code.config import PRESETS
from simulations.code.pipeline import stages_for
from simulations.code.stage_eval import prediction_sources
from simulations.code.stages import trained_methods

TOY = PRESETS["toy"]


def test_stages_follow_the_registry_inits_and_reuses():
    assert TOY.composed_init == "standard"  # the reference code's choice, set by the presets
    assert stages_for(TOY) == ("data", "vocab", "denoiser", "direct", "standard", "composed", "predict", "evaluate")
    paper = dataclasses.replace(TOY, composed_init="denoiser")
    assert trained_methods(paper) == ("direct", "standard", "composed")  # one phase: registry order
    # composed-base reuses composed, which starts from standard: both are trained, standard first
    assert trained_methods(dataclasses.replace(TOY, methods=("composed-base",))) == ("standard", "composed")
    assert trained_methods(dataclasses.replace(TOY, methods=("composed-denoiser-init",))) == ("composed-denoiser-init",)


def test_predictions_use_the_reused_f_and_the_registry_denoiser_flag():
    assert prediction_sources(TOY.methods) == {
        "direct": [("direct", False), ("direct+posthoc", True)],
        "standard": [("standard", False), ("standard+posthoc", True)],
        "composed": [("composed", True), ("composed-base", False)]}


def test_methods_the_pipeline_cannot_train_are_refused_by_field():
    with pytest.raises(ConfigError, match="field 'methods': unknown method 'smartt'"):
        dataclasses.replace(TOY, methods=("smartt",))
    register_method(Method("l2sp-code", "denoiser", "l2sp", False))
    try:
        with pytest.raises(ConfigError, match="objective 'l2sp' is not implemented by the code pipeline"):
            dataclasses.replace(TOY, methods=("l2sp-code",))
    finally:
        METHODS.pop("l2sp-code")
    with pytest.raises(ConfigError, match="at least one method"):
        dataclasses.replace(TOY, methods=())
