"""Tests of ``load_torchvision`` with random-weight torchvision-layout safetensors files.

torch is not installed here, so the test writes the files itself. Their key names and shapes
come from torchvision's architectures as written out below (``torchvision/models/resnet.py``,
``mobilenetv2.py``, ``alexnet.py``, ``vgg.py``: module attribute names, ``nn.Sequential``
indices, ``Conv2d(out, in/groups, kh, kw)`` and ``Linear(out, in)`` weight layouts), not from
the loader's own tables; a NumPy forward pass in torch's NCHW layout (conv, batch norm, ReLU,
max pool, classifier) then checks the converted weights.
"""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from ebsp_jax import models
from ebsp_jax.models import torchvision as tv


# --- torchvision's state_dict layouts, written out ----------------------------------------
def _bn(p, c):
  return {f"{p}.weight": (c,), f"{p}.bias": (c,), f"{p}.running_mean": (c,),
          f"{p}.running_var": (c,), f"{p}.num_batches_tracked": ()}


def tv_resnet(layers, bottleneck, num_classes=1000):
  sd = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64)}
  expansion = 4 if bottleneck else 1
  inplanes = 64
  for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
    stride = 1 if i == 0 else 2
    for b in range(n):
      p = f"layer{i + 1}.{b}"
      if bottleneck:
        sd[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
        sd.update(_bn(f"{p}.bn1", planes))
        sd[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
        sd.update(_bn(f"{p}.bn2", planes))
        sd[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
        sd.update(_bn(f"{p}.bn3", planes * 4))
      else:
        sd[f"{p}.conv1.weight"] = (planes, inplanes, 3, 3)
        sd.update(_bn(f"{p}.bn1", planes))
        sd[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
        sd.update(_bn(f"{p}.bn2", planes))
      if b == 0 and (stride != 1 or inplanes != planes * expansion):
        sd[f"{p}.downsample.0.weight"] = (planes * expansion, inplanes, 1, 1)
        sd.update(_bn(f"{p}.downsample.1", planes * expansion))
      inplanes = planes * expansion
  sd["fc.weight"] = (num_classes, 512 * expansion)
  sd["fc.bias"] = (num_classes,)
  return sd


def tv_mobilenet_v2(num_classes=1000):
  sd = {"features.0.0.weight": (32, 3, 3, 3), **_bn("features.0.1", 32)}
  settings = [(1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3),
              (6, 320, 1)]
  inp, i = 32, 1
  for t, c, n in settings:
    for _ in range(n):
      p, hidden, j = f"features.{i}.conv", inp * t, 0
      if t != 1:
        sd[f"{p}.0.0.weight"] = (hidden, inp, 1, 1)
        sd.update(_bn(f"{p}.0.1", hidden))
        j = 1
      sd[f"{p}.{j}.0.weight"] = (hidden, 1, 3, 3)          # depthwise: in/groups = 1
      sd.update(_bn(f"{p}.{j}.1", hidden))
      sd[f"{p}.{j + 1}.weight"] = (c, hidden, 1, 1)
      sd.update(_bn(f"{p}.{j + 2}", c))
      inp, i = c, i + 1
  sd[f"features.{i}.0.weight"] = (1280, 320, 1, 1)
  sd.update(_bn(f"features.{i}.1", 1280))
  sd["classifier.1.weight"] = (num_classes, 1280)
  sd["classifier.1.bias"] = (num_classes,)
  return sd


def tv_alexnet(num_classes=1000):
  sd = {}
  for idx, (o, i, k) in zip((0, 3, 6, 8, 10), ((64, 3, 11), (192, 64, 5), (384, 192, 3),
                                               (256, 384, 3), (256, 256, 3))):
    sd[f"features.{idx}.weight"] = (o, i, k, k)
    sd[f"features.{idx}.bias"] = (o,)
  for idx, (o, i) in zip((1, 4, 6), ((4096, 256 * 6 * 6), (4096, 4096), (num_classes, 4096))):
    sd[f"classifier.{idx}.weight"] = (o, i)
    sd[f"classifier.{idx}.bias"] = (o,)
  return sd


def tv_vgg16(batch_norm, num_classes=1000):
  cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
  sd, idx, inp = {}, 0, 3
  for v in cfg:
    if v == "M":
      idx += 1
      continue
    sd[f"features.{idx}.weight"] = (v, inp, 3, 3)
    sd[f"features.{idx}.bias"] = (v,)
    if batch_norm:
      sd.update(_bn(f"features.{idx + 1}", v))
    idx += 3 if batch_norm else 2      # conv, [bn], relu
    inp = v
  for i, (o, n) in zip((0, 3, 6), ((4096, 512 * 7 * 7), (4096, 4096), (num_classes, 4096))):
    sd[f"classifier.{i}.weight"] = (o, n)
    sd[f"classifier.{i}.bias"] = (o,)
  return sd


TV_LAYOUTS = {
    "resnet18": lambda: tv_resnet((2, 2, 2, 2), False),
    "resnet50": lambda: tv_resnet((3, 4, 6, 3), True),
    "mobilenet_v2": tv_mobilenet_v2,
    "alexnet": tv_alexnet,
    "vgg16": lambda: tv_vgg16(False),
    "vgg16_bn": lambda: tv_vgg16(True),
}
#: torchvision's published parameter counts (weights + biases, no running statistics).
TV_PARAMS = {"resnet18": 11_689_512, "resnet50": 25_557_032, "mobilenet_v2": 3_504_872,
             "alexnet": 61_100_840, "vgg16": 138_357_544, "vgg16_bn": 138_365_992}


def random_state_dict(layout, seed=0, dtype=np.float32):
  """Random tensors in a torchvision layout (He-scaled weights, varied BN statistics)."""
  rng = np.random.default_rng(seed)
  sd = {}
  for k, shape in layout.items():
    if k.endswith("num_batches_tracked"):
      sd[k] = np.asarray(123, np.int64)
      continue
    if k.endswith("running_var"):
      v = rng.uniform(0.5, 1.5, shape)
    elif k.endswith(".weight") and len(shape) == 1:      # batch-norm scale
      v = rng.uniform(0.5, 1.5, shape)
    elif len(shape) >= 2:
      v = rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
    else:
      v = rng.normal(0, 0.1, shape)
    sd[k] = v.astype(dtype)
  return sd


# --- a NumPy forward in torch's layout ----------------------------------------------------
def np_conv(x, w, b=None, stride=1, pad=0, groups=1):
  """torch.nn.functional.conv2d: x (N, C, H, W), w (O, C/groups, kh, kw)."""
  x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  o, cg, kh, kw = w.shape
  win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride,
                                                                          ::stride]
  n, c, oh, ow = win.shape[:4]
  win = win.reshape(n, groups, c // groups, oh, ow, kh, kw)
  wg = w.reshape(groups, o // groups, cg, kh, kw)
  y = np.einsum("ngchwij,gocij->ngohw", win, wg).reshape(n, o, oh, ow)
  return y if b is None else y + b[None, :, None, None]


def np_bn(x, sd, p):
  inv = sd[f"{p}.weight"] / np.sqrt(sd[f"{p}.running_var"] + 1e-5)
  return ((x - sd[f"{p}.running_mean"][None, :, None, None]) * inv[None, :, None, None]
          + sd[f"{p}.bias"][None, :, None, None])


def np_maxpool(x, k=3, stride=2, pad=1):
  x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
  win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride,
                                                                        ::stride]
  return win.max(axis=(-1, -2))


def _captured_inputs(model, variables, x, targets):
  """Inputs (first positional argument) of the modules named in ``targets``, by path."""
  got = {}

  def interceptor(next_fun, args, kwargs, context):
    path = "/".join(context.module.path)
    if context.method_name == "__call__" and path in targets and path not in got:
      got[path] = np.asarray(args[0])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    out = model.apply(variables, jnp.asarray(x), train=False)
  return got, np.asarray(out)


def _write(tmp_path, name, sd):
  path = os.path.join(tmp_path, f"{name}.safetensors")
  save_file(sd, path)
  return path


@pytest.mark.parametrize("name", list(TV_LAYOUTS))
def test_expected_tensors_are_torchvisions(name):
  model_name = "vgg16" if name.startswith("vgg16") else name
  _, shapes = tv.model_and_shapes(model_name, batch_norm=name != "vgg16")
  want = {k: s for k, s in TV_LAYOUTS[name]().items() if not k.endswith("num_batches_tracked")}
  assert list(shapes.items()) == list(want.items())        # same keys, order and shapes
  stats = ("running_mean", "running_var")
  assert sum(int(np.prod(s)) for k, s in shapes.items()
             if not k.endswith(stats)) == TV_PARAMS[name]


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_stem_and_classifier_match_numpy(tmp_path, name):
  sd = random_state_dict(TV_LAYOUTS[name](), seed=1)
  model, variables = models.load_torchvision(name, _write(tmp_path, name, sd))
  assert model.small_inputs is False and model.num_classes == 1000
  x = np.random.default_rng(2).normal(size=(2, 64, 64, 3)).astype(np.float32)
  got, logits = _captured_inputs(model, variables, x, {"stage1_block0", "head"})
  # Stem: 7x7/2 pad 3 conv, BN, ReLU, 3x3/2 pad 1 max pool, in torch's NCHW layout.
  xt = x.transpose(0, 3, 1, 2).astype(np.float64)
  stem = np_maxpool(np.maximum(np_bn(np_conv(xt, sd["conv1.weight"], stride=2, pad=3), sd,
                                     "bn1"), 0))
  np.testing.assert_allclose(got["stage1_block0"].transpose(0, 3, 1, 2), stem, rtol=1e-4,
                             atol=1e-4)
  # Classifier: the pooled features times fc.weight^T plus fc.bias.
  feats = got["head"].astype(np.float64)
  want = feats @ sd["fc.weight"].T + sd["fc.bias"]
  # (Random weights without zero-initialised residual BNs: logits ~1e4, float32 sums.)
  np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
  assert variables["batch_stats"]["stage4_block1" if name == "resnet18" else
                                  "stage4_block2"]["bn2"]["var"].shape[0] == 512


def test_mobilenet_v2_stem_padding_and_classifier(tmp_path):
  """Its stride-2 3x3 convs pad symmetrically (1, 1) as torch does, not as flax 'SAME'."""
  sd = random_state_dict(tv_mobilenet_v2(num_classes=7), seed=3, dtype=np.float16)
  model, variables = models.load_torchvision("mobilenet_v2", _write(tmp_path, "mnv2", sd))
  assert model.num_classes == 7
  sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
  x = np.random.default_rng(4).normal(size=(2, 32, 32, 3)).astype(np.float32)
  got, logits = _captured_inputs(model, variables, x, {"stage1_block0", "head"})
  xt = x.transpose(0, 3, 1, 2).astype(np.float64)
  stem = np.clip(np_bn(np_conv(xt, sd["features.0.0.weight"], stride=2, pad=1), sd,
                       "features.0.1"), 0, 6)
  np.testing.assert_allclose(got["stage1_block0"].transpose(0, 3, 1, 2), stem, rtol=2e-3,
                             atol=2e-3)
  # The depthwise conv of the first block, (C, 1, 3, 3) with groups = C.
  dw = np.clip(np_bn(np_conv(stem, sd["features.1.conv.0.0.weight"], pad=1, groups=32), sd,
                     "features.1.conv.0.1"), 0, 6)
  got_dw, _ = _captured_inputs(model, variables, x, {"stage1_block0/project_conv"})
  np.testing.assert_allclose(got_dw["stage1_block0/project_conv"].transpose(0, 3, 1, 2), dw,
                             rtol=2e-3, atol=2e-3)
  np.testing.assert_allclose(logits, got["head"] @ sd["classifier.1.weight"].T
                             + sd["classifier.1.bias"], rtol=2e-3, atol=2e-3)


def test_a_file_that_does_not_fit_names_the_first_tensor(tmp_path):
  layout = tv_resnet((2, 2, 2, 2), False, num_classes=10)
  sd = random_state_dict(layout)
  good = _write(tmp_path, "good", sd)
  model, _ = models.load_torchvision("resnet18", good)
  assert model.num_classes == 10
  with pytest.raises(FileNotFoundError, match="no such file"):
    models.load_torchvision("resnet18", os.path.join(tmp_path, "absent.safetensors"))
  bad = os.path.join(tmp_path, "bad.safetensors")
  with open(bad, "wb") as f:
    f.write(b"not a safetensors file")
  with pytest.raises(tv.TorchvisionLoadError, match="is not a readable safetensors file"):
    models.load_torchvision("resnet18", bad)
  cases = [
      ("layer2.0.conv1.weight", None, r"missing tensor 'layer2.0.conv1.weight' \(expected "
                                      r"shape \(128, 64, 3, 3\)\)"),
      ("layer1.1.bn2.running_var", np.ones((32,), np.float32),
       r"tensor 'layer1.1.bn2.running_var' has shape \(32,\); expected \(64,\)"),
      ("conv1.weight", np.ones((64, 3, 3, 3), np.float32),
       r"tensor 'conv1.weight' has shape \(64, 3, 3, 3\); expected \(64, 3, 7, 7\)"),
      ("layer3.0.conv2.weight", np.ones((256, 256, 3, 3), np.int32), "has dtype int32"),
      ("extra.weight", np.ones((3,), np.float32), r"unexpected tensor 'extra.weight' \(and 0 "
                                                  r"more\): not a torchvision resnet18"),
  ]
  for key, value, match in cases:
    broken = dict(sd)
    if value is None:
      del broken[key]
    else:
      broken[key] = value
    with pytest.raises(tv.TorchvisionLoadError, match=match):
      models.load_torchvision("resnet18", _write(tmp_path, "broken", broken))
  with pytest.raises(tv.TorchvisionLoadError, match=r"tensor 'fc.weight' has shape \(10, "
                                                    r"512\); expected \(1000, 512\)"):
    models.load_torchvision("resnet18", good, num_classes=1000)
  with pytest.raises(tv.TorchvisionLoadError, match="unknown model 'resnet20'; supported"):
    models.load_torchvision("resnet20", good)
  with pytest.raises(tv.TorchvisionLoadError, match="small_inputs is fixed"):
    models.load_torchvision("resnet18", good, small_inputs=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alexnet", "vgg16", "vgg16_bn"])
def test_large_models_load_and_classify_like_numpy(tmp_path, name):
  """AlexNet and VGG-16 (0.25-0.55 GB of weights): classifier after the NCHW flatten."""
  sd = random_state_dict(TV_LAYOUTS[name](), seed=5, dtype=np.float16)
  model_name = "vgg16" if name.startswith("vgg16") else name
  model, variables = models.load_torchvision(model_name, _write(tmp_path, name, sd))
  sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
  x = np.random.default_rng(6).normal(size=(1, 224, 224, 3)).astype(np.float32)
  fc1 = "fc1"
  got, _ = _captured_inputs(model, variables, x, {fc1, "conv1"})
  first = "features.0"
  xt = x.transpose(0, 3, 1, 2).astype(np.float64)
  if name == "alexnet":
    y = np.maximum(np_conv(xt, sd[f"{first}.weight"], sd[f"{first}.bias"], stride=4, pad=2), 0)
    y = np_maxpool(y, 3, 2, 0)
    pooled_nchw = got[fc1].reshape(1, 6, 6, 256).transpose(0, 3, 1, 2)
    key = "classifier.1"
  else:
    y = np_conv(xt, sd[f"{first}.weight"], sd[f"{first}.bias"], pad=1)
    if name == "vgg16_bn":
      y = np_bn(y, sd, "features.1")
    y = np.maximum(y, 0)
    pooled_nchw = got[fc1].reshape(1, 7, 7, 512).transpose(0, 3, 1, 2)
    key = "classifier.0"
  # The input of conv1: the first conv (+ BN) + ReLU (+ AlexNet's 3x3/2 max pool).
  np.testing.assert_allclose(got["conv1"].transpose(0, 3, 1, 2), y, rtol=2e-3, atol=2e-3)
  # fc1 in torch's layout on torch's flatten order equals the flax dense on the NHWC flatten.
  fc1_torch = pooled_nchw.reshape(1, -1) @ sd[f"{key}.weight"].T + sd[f"{key}.bias"]
  fc1_flax = (got[fc1] @ np.asarray(variables["params"]["fc1"]["kernel"], np.float64)
              + np.asarray(variables["params"]["fc1"]["bias"]))
  np.testing.assert_allclose(fc1_flax, fc1_torch, rtol=1e-3, atol=1e-3)
