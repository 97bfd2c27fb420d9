"""Flax models for EBSP experiments, registered by name.

Usage::

    from ebsp_jax import models
    model = models.get_model('resnet20', num_classes=10)
    variables = model.init(rng, x, train=False)            # x: NHWC float
    logits = model.apply(variables, x, train=False)         # (N, num_classes) float32
    logits, updates = model.apply(variables, x, train=True, mutable=['batch_stats'],
                                  rngs={'dropout': key})

``dot_general_cls`` / ``conv_general_dilated_cls`` reach every ``nn.Dense`` / ``nn.Conv`` (Flax's
injection hooks), so one definition runs in float, fake-quant and integer-emulation modes. The
first conv is always ``conv_init`` and the final dense ``head`` (:func:`first_and_last_layer`);
blocks are ``stage{s}_block{b}`` (s from 1) with ``conv1``/``bn1``/... and ``proj_conv``/``proj_bn``.

Measured with ``jax.eval_shape`` and :func:`ebsp_jax.hw.model_workload` (the one tracer of layer
shapes; conv + dense MACs per image):

============  ===========  ==========  ==========  ==============================================
model         input        params      MACs        notes
============  ===========  ==========  ==========  ==============================================
lenet5        28x28x1      61,706      0.42 M      ReLU + max pool, no BN
resnet20      32x32x3      272,474     40.8 M      option-B shortcuts (option A: 269,722 params)
resnet56      32x32x3      855,770     125.7 M     option-B shortcuts (option A: 853,018 params)
vgg16         32x32x3      14,724,042  313.2 M     13 conv+BN, GAP to 512, single head
alexnet       224x224x3    61,100,840  714.2 M     torchvision; 1000 classes
resnet18      224x224x3    11,689,512  1.814 G     v1.5; 1000 classes
resnet50      224x224x3    25,557,032  4.089 G     v1.5; 1000 classes
mobilenet_v2  224x224x3    3,504,872   300.8 M     ReLU6; 1000 classes
============  ===========  ==========  ==========  ==============================================

The ImageNet models equal torchvision's published parameter counts exactly. Small inputs
(``min(H, W) <= 64``, or ``small_inputs=True``): resnet18/50 use a 3x3 stride-1 stem without
max pool, alexnet a 3x3 stride-1 stem with 2x2 pools, mobilenet_v2 stride 1 in the stem and in
stage 2; param paths stay the same.

Pretrained weights: :func:`load_torchvision` reads a torchvision ``state_dict`` saved as
safetensors into resnet18 / resnet50 / mobilenet_v2 / alexnet / vgg16 (layout conventions in
:mod:`ebsp_jax.models.torchvision`).
"""

from ebsp_jax.models.alexnet import AlexNet
from ebsp_jax.models.base import SMALL_INPUT_MAX_SIDE, EbspModel, Layers
from ebsp_jax.models.cifar_resnet import CifarResNet, ResNet20, ResNet56
from ebsp_jax.models.lenet import LeNet5
from ebsp_jax.models.mobilenet_v2 import MobileNetV2
from ebsp_jax.models.registry import (
    FIRST_LAYER,
    INPUT_SHAPES,
    LAST_LAYER,
    MODELS,
    default_input_shape,
    first_and_last_layer,
    get_model,
    kernel_paths,
)
from ebsp_jax.models.resnet import ResNet, ResNet18, ResNet50
from ebsp_jax.models.torchvision import (IMAGENET_MEAN, IMAGENET_STD, TorchvisionLoadError,
                                         load_torchvision)
from ebsp_jax.models.vgg import VGG, VGG16

__all__ = [
    "AlexNet", "CifarResNet", "EbspModel", "FIRST_LAYER", "IMAGENET_MEAN", "IMAGENET_STD",
    "INPUT_SHAPES", "LAST_LAYER",
    "Layers", "LeNet5", "MODELS", "MobileNetV2", "ResNet", "ResNet18",
    "ResNet20", "ResNet50", "ResNet56", "SMALL_INPUT_MAX_SIDE", "VGG", "VGG16",
    "TorchvisionLoadError", "default_input_shape", "first_and_last_layer", "get_model",
    "kernel_paths", "load_torchvision",
]
