"""composedft: the composition core of the composed fine-tuning package.

Composed fine-tuning (Xie, Ma & Liang, ICML 2021) keeps a pre-trained denoiser Π frozen and
trains a base predictor f so that Π∘f fits the labeled data.
"""
__version__ = "0.1.0"

from .config import ConfigError, apply_overrides, cfg_to_dict, parse_config  # noqa: E402
from .io import CheckpointError, DataFileError, load_checkpoint, save_checkpoint  # noqa: E402

from .compose import Composed, freeze, init_base_predictor  # noqa: E402,F401
from .estimators import composed_sequence_loss, score_function_surrogate  # noqa: E402,F401
from .objectives import (composed_mse, posthoc_predict, sequence_logprob, standard_mse,  # noqa: E402,F401
                         standard_nll)
from .methods import METHODS, Method, get_method, register_method  # noqa: E402,F401
from .train import TrainConfig, TrainResult  # noqa: E402,F401  (not `train`: it would shadow the module)
