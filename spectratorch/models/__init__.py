"""Networks for spectra and tabular features, the preprocessing layer, and the registry that names them.

Importing this package registers every architecture (``VGG11``, ``VGG16``, ``TinyVGG``, ``ResNetV2``, ``Linear``,
``MiniRocket``, ``Hydra``, ``PLSDA``, ``LDA``, ``KernelRidge``, ``Ensemble``).
"""

from spectratorch.models.classifier import SpectralClassifier, build_classifier
from spectratorch.models.ensemble import Ensemble, EnsembleNet
from spectratorch.models.hydra import Hydra, HydraNet
from spectratorch.models.kernel import KernelRidge, KernelRidgeNet
from spectratorch.models.lda import LDA, LDAClassifier
from spectratorch.models.linear import Linear, LinearClassifier
from spectratorch.models.minirocket import MiniRocket, MiniRocketNet
from spectratorch.models.plsda import PLSDA, PLSDAClassifier
from spectratorch.models.preprocess import INFERENCE_TRANSFORMS, SIMULATE_POINTS, Preprocess
from spectratorch.models.registry import create_model, is_model, list_models, register_model
from spectratorch.models.resnetv2 import PreActResNet, ResNetV2
from spectratorch.models.vgg import VGG, VGG11, VGG16, TinyVGG

__all__ = [
    "Ensemble",
    "EnsembleNet",
    "Hydra",
    "HydraNet",
    "INFERENCE_TRANSFORMS",
    "KernelRidge",
    "KernelRidgeNet",
    "LDA",
    "LDAClassifier",
    "Linear",
    "LinearClassifier",
    "MiniRocket",
    "MiniRocketNet",
    "SIMULATE_POINTS",
    "PLSDA",
    "PLSDAClassifier",
    "PreActResNet",
    "Preprocess",
    "ResNetV2",
    "SpectralClassifier",
    "TinyVGG",
    "VGG",
    "VGG11",
    "VGG16",
    "build_classifier",
    "create_model",
    "is_model",
    "list_models",
    "register_model",
]
