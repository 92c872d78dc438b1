"""composedft: the composition core of the composed fine-tuning package.

Composed fine-tuning (Xie, Ma & Liang, ICML 2021) keeps a pre-trained denoiser Π frozen and
trains a base predictor f so that Π∘f fits the labeled data.
"""
__version__ = "0.1.0"

from .config import ConfigError, apply_overrides, cfg_to_dict, parse_config  # noqa: E402
from .io import CheckpointError, DataFileError, load_checkpoint, save_checkpoint  # noqa: E402

try:  # the composition core proper (compose/objectives/train) is imported lazily if present
    from .compose import Composed, freeze, init_base_predictor  # noqa: F401
except ImportError:  # pragma: no cover - only while the package is being assembled
    pass
