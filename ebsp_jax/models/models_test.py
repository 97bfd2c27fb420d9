"""Tests for ebsp_jax.models: registry, shapes, param/MAC counts, hooks, train/eval modes.

Speed: eager ``model.init`` compiles every initializer op per parameter shape (about 30 s for
ResNet-50 or MobileNetV2 on 2 shared cores), so the default suite traces ``init`` with
``jax.eval_shape`` (the whole module code runs, nothing is allocated) and fills the variables
on the host with numpy (:func:`host_variables`); every model's ``apply`` then runs for real, in
eval and train mode, with and without recording hooks. Real ``init`` runs by default for lenet5
and for every model under ``-m slow``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebsp_jax import models
from ebsp_jax.models.base import adaptive_avg_pool

ALL = sorted(models.MODELS)
SMALL_SHAPE = {"lenet5": (28, 28, 1)}  # others: CIFAR 32x32x3


def small_shape(name: str) -> tuple[int, int, int]:
  return SMALL_SHAPE.get(name, (32, 32, 3))


def host_variables(model: nn.Module, x: jnp.ndarray, seed: int = 0) -> dict[str, Any]:
  """Variables with ``model.init``'s exact tree/shapes, filled on the host (no XLA compiles).

  Kernels ~ N(0, 1/fan_in), biases ~ N(0, 0.01^2), BN scale 1 / bias 0 / mean 0 / var 1.
  """
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
  rng = np.random.default_rng(seed)  # numpy on the host: no XLA compiles
  flat = flax.traverse_util.flatten_dict(shapes, sep="/")
  out = {}
  for path, s in flat.items():
    leaf = path.rsplit("/", 1)[-1]
    if leaf == "kernel":
      v = rng.normal(size=s.shape) / math.sqrt(math.prod(s.shape[:-1]))
    elif leaf == "bias" and path.startswith("params/"):
      v = rng.normal(size=s.shape) * 0.01
    elif leaf in ("scale", "var"):
      v = np.ones(s.shape)
    elif leaf in ("mean", "bias"):
      v = np.zeros(s.shape)
    else:
      raise AssertionError(f"unexpected variable {path}")
    out[path] = jnp.asarray(v, s.dtype)
  return flax.traverse_util.unflatten_dict(out, sep="/")


class CountingConv(nn.Module):
  """Hook for ``conv_general_dilated_cls``: counts calls in collection 'hook_calls'."""

  @nn.compact
  def __call__(self, lhs, rhs, *args, **kwargs):
    c = self.variable("hook_calls", "conv", lambda: jnp.zeros((), jnp.int32))
    c.value += 1
    return jax.lax.conv_general_dilated(lhs, rhs, *args, **kwargs)


class CountingDot(nn.Module):
  """Hook for ``dot_general_cls``: counts calls in collection 'hook_calls'."""

  @nn.compact
  def __call__(self, lhs, rhs, *args, **kwargs):
    c = self.variable("hook_calls", "dense", lambda: jnp.zeros((), jnp.int32))
    c.value += 1
    return jax.lax.dot_general(lhs, rhs, *args, **kwargs)


def fast_jit(fn: Callable[..., Any], *args: Any) -> Any:
  """``jax.jit(fn)(*args)`` compiled with XLA's backend optimizations off.

  Test inputs are tiny, so run time is negligible and compile time is everything: level 0
  compiles a train-mode MobileNetV2 about 35% faster on CPU (measured 10.4 s -> 6.4 s).
  """
  compiled = jax.jit(fn).lower(*args).compile(compiler_options={"xla_backend_optimization_level": 0})
  return compiled(*args)


def num_params(tree: Any) -> int:
  return sum(math.prod(a.shape) for a in jax.tree_util.tree_leaves(tree))


# ----------------------------------------------------------------------------- registry


def test_registry_names():
  assert ALL == [
      "alexnet", "lenet5", "mobilenet_v2", "resnet18", "resnet20", "resnet50", "resnet56", "vgg16"
  ]
  for name, cls in models.MODELS.items():
    assert issubclass(cls, models.EbspModel), name


def test_unknown_model_error_is_one_line_and_lists_known():
  with pytest.raises(ValueError) as e:
    models.get_model("foo")
  msg = str(e.value)
  assert msg == "unknown model 'foo'; known: " + ", ".join(ALL)
  assert "\n" not in msg


def test_bad_overrides_and_num_classes():
  with pytest.raises(ValueError, match=r"model 'resnet20' got unknown argument\(s\) small_inputs; "
                     r"accepted: num_classes, dot_general_cls, conv_general_dilated_cls, dtype; "
                     r"model-specific: depth, widths, zero_init_residual$"):
    models.get_model("resnet20", small_inputs=True)
  for bad in (0, True, 2.0):
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
      models.get_model("lenet5", num_classes=bad)
  assert models.get_model("lenet5", num_classes=np.int64(3)).num_classes == 3
  m = models.get_model("resnet50", num_classes=7, small_inputs=False, dtype=jnp.bfloat16)
  assert (m.num_classes, m.small_inputs, m.dtype) == (7, False, jnp.bfloat16)


def test_misspelled_argument_lists_the_real_accepted_arguments():
  """lenet5 has no model-specific fields; the message used to say 'overridable: (none)'."""
  with pytest.raises(ValueError) as e:
    models.get_model("lenet5", num_clases=10)
  assert str(e.value) == (
      "model 'lenet5' got unknown argument(s) num_clases (did you mean num_classes?); accepted: "
      "num_classes, dot_general_cls, conv_general_dilated_cls, dtype; model-specific: (none)")
  with pytest.raises(ValueError, match=r"depht, foo \(did you mean depth for depht\?\); accepted"):
    models.get_model("resnet56", depht=20, foo=1)


def test_default_input_shape_and_first_last():
  assert models.default_input_shape("lenet5", "fashion_mnist") == (28, 28, 1)
  assert models.default_input_shape("resnet20", "cifar10") == (32, 32, 3)
  assert models.default_input_shape("resnet50", "imagenet") == (224, 224, 3)
  with pytest.raises(ValueError, match="unknown dataset 'svhn'; known: cifar10, fashion_mnist, imagenet, mnist"):
    models.default_input_shape("resnet20", "svhn")
  with pytest.raises(ValueError, match="unknown model"):
    models.default_input_shape("resnet21", "cifar10")
  for name in ALL:
    assert models.first_and_last_layer(name) == ("conv_init", "head")


# ------------------------------------------------------------------ param counts and MACs

# Reference counts: torchvision's documented num_params / GFLOPS (= GMAC) for 1000 classes at
# 224x224; He et al. 2016 option A ResNet-20/56 (0.27M / 0.85M) plus the 2,752 params of the
# option-B projections (1x1 convs 16->32, 32->64 and their BN scale/bias).
IMAGENET_REF = {  # name: (params, GMAC rounded as torchvision reports it; checked in hw)
    "alexnet": (61_100_840, 0.71),
    "resnet18": (11_689_512, 1.81),
    "resnet50": (25_557_032, 4.09),
    "mobilenet_v2": (3_504_872, 0.30),
}


@pytest.mark.parametrize("name", sorted(IMAGENET_REF))
def test_imagenet_param_counts_and_macs(name):
  model = models.get_model(name, num_classes=1000)
  x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  shapes = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v, train=False), x)
  ref_params, ref_gmac = IMAGENET_REF[name]
  assert num_params(shapes["params"]) == ref_params   # MACs: hw/workload_test.py
  # The ImageNet stem is used at 224 (auto small_inputs=False).
  k = shapes["params"]["conv_init"]["kernel"].shape
  assert k[:2] == {"alexnet": (11, 11), "mobilenet_v2": (3, 3)}.get(name, (7, 7))


def test_cifar_param_counts():
  counts = {}
  for name in ("resnet20", "resnet56", "vgg16", "lenet5"):
    model = models.get_model(name, num_classes=10)
    shape = small_shape(name)
    s = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *shape)), train=False))
    counts[name] = num_params(s["params"])
  assert counts["resnet20"] == 269_722 + 2_752
  assert counts["resnet56"] == 853_018 + 2_752
  # LeNet-5: (5*5*1+1)*6 + (5*5*6+1)*16 + (400+1)*120 + (120+1)*84 + (84+1)*10
  assert counts["lenet5"] == 156 + 2416 + 48120 + 10164 + 850
  # VGG-16: 13 bias-free 3x3 convs + 13 BN (scale, bias) + 512->10 head.
  chans = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
  vgg = sum(9 * a * b + 2 * b for a, b in zip(chans[:-1], chans[1:])) + 512 * 10 + 10
  assert counts["vgg16"] == vgg == 14_724_042


# ------------------------------------------------------------------- forward passes + hooks


@pytest.mark.parametrize("name", ALL)
def test_forward_eval_train_and_hooks(name):
  """Every model at batch 2 on a small input: eval/train shapes, finiteness, BN updates,
  dropout only in train mode, and every conv/dense goes through the injected hooks (count ==
  number of kernels) without changing the result.

  All applies run in ONE jitted function: one XLA compile is ~3x cheaper on CPU than compiling
  every eager op of a train-mode MobileNetV2 separately (see :func:`fast_jit`).
  """
  shape = small_shape(name)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, *shape), jnp.float32)
  model = models.get_model(name, num_classes=10)
  hooked = models.get_model(
      name, num_classes=10, dot_general_cls=CountingDot, conv_general_dilated_cls=CountingConv
  )
  variables = host_variables(model, x)

  def run(variables, x):
    def train(key):
      return model.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": key})

    return {
        "eval": model.apply(variables, x, train=False),
        "hooked": hooked.apply(variables, x, train=False, mutable=["hook_calls"]),
        "train": train(jax.random.PRNGKey(3)),
        "train_other_key": train(jax.random.PRNGKey(4))[0],
    }

  out = fast_jit(run, variables, x)
  logits = out["eval"]
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))
  assert not np.allclose(logits[0], logits[1])

  train_logits, updates = out["train"]
  assert train_logits.shape == (2, 10) and bool(jnp.all(jnp.isfinite(train_logits)))
  if "batch_stats" in variables:
    old = flax.traverse_util.flatten_dict(variables["batch_stats"], sep="/")
    new = flax.traverse_util.flatten_dict(updates["batch_stats"], sep="/")
    assert old.keys() == new.keys()
    changed = [k for k in old if not np.allclose(old[k], new[k])]
    assert len(changed) == len(old), "every BN running statistic must move in train mode"
    assert not np.allclose(train_logits, logits), "train mode normalizes with batch statistics"
  else:
    assert name in ("lenet5", "alexnet") and not updates  # no batch norm in these
  has_dropout = name in ("alexnet", "mobilenet_v2")
  assert bool(np.allclose(out["train_other_key"], train_logits)) != has_dropout

  hooked_logits, state = out["hooked"]
  np.testing.assert_array_equal(np.asarray(hooked_logits), np.asarray(logits))
  calls = flax.traverse_util.flatten_dict(state["hook_calls"], sep="/")
  kernels = models.kernel_paths(variables)
  assert all(int(v) == 1 for v in calls.values())
  conv_paths = sorted(k.rsplit("/", 2)[0] for k in calls if k.endswith("/conv"))
  dense_paths = sorted(k.rsplit("/", 2)[0] for k in calls if k.endswith("/dense"))
  assert len(conv_paths) + len(dense_paths) == len(kernels)
  assert sorted(conv_paths + dense_paths) == kernels
  assert "conv_init" in conv_paths and "head" in dense_paths
  flat_params = flax.traverse_util.flatten_dict(variables["params"], sep="/")
  assert all(flat_params[p + "/kernel"].ndim == 4 for p in conv_paths)
  assert all(flat_params[p + "/kernel"].ndim == 2 for p in dense_paths)


def test_real_init_and_apply_lenet5():
  _real_init_and_apply("lenet5")


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ALL if n != "lenet5"])
def test_real_init_and_apply_slow(name):
  _real_init_and_apply(name)


def _real_init_and_apply(name: str) -> None:
  x = jax.random.normal(jax.random.PRNGKey(1), (2, *small_shape(name)))
  model = models.get_model(name, num_classes=10)
  variables = fast_jit(lambda k, x: model.init(k, x, train=False), jax.random.PRNGKey(0), x)
  ref = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
  assert jax.tree_util.tree_map(lambda a: a.shape, variables) == jax.tree_util.tree_map(
      lambda a: a.shape, ref
  )
  apply = lambda v, x: model.apply(v, x, train=False)  # noqa: E731
  logits, logits_rev = fast_jit(lambda v, x: (apply(v, x), apply(v, x[::-1])), variables, x)
  assert logits.shape == (2, 10) and bool(jnp.all(jnp.isfinite(logits)))
  # Examples are processed independently, and different inputs give different logits.
  np.testing.assert_allclose(logits_rev[::-1], logits, rtol=1e-5, atol=1e-5)
  assert not np.allclose(logits[0], logits[1])


def test_small_inputs_auto_and_explicit():
  def stem_kernel(name, hw, **kw):
    m = models.get_model(name, **kw)
    s = jax.eval_shape(lambda: m.init(jax.random.PRNGKey(0), jnp.zeros((1, hw, hw, 3)), train=False))
    return s["params"]["conv_init"]["kernel"].shape

  assert stem_kernel("resnet18", 32)[:2] == (3, 3)
  assert stem_kernel("resnet18", 64)[:2] == (3, 3)
  assert stem_kernel("resnet18", 96)[:2] == (7, 7)
  assert stem_kernel("resnet18", 32, small_inputs=False)[:2] == (7, 7)
  assert stem_kernel("alexnet", 32)[:2] == (3, 3)
  assert stem_kernel("alexnet", 128, small_inputs=True)[:2] == (3, 3)
  # MobileNetV2 keeps its 3x3 stem; small inputs only change strides: last map 4x4 at 32x32.
  assert output_shape("mobilenet_v2", "conv_last")[1:3] == (4, 4)
  assert output_shape("mobilenet_v2", "conv_last", small_inputs=False)[1:3] == (1, 1)
  assert output_shape("resnet50", "stage4_block2/conv3")[1:3] == (4, 4)
  assert output_shape("resnet50", "stage4_block2/conv3")[3] == 2048


def output_shape(name: str, path: str, hw: int = 32, **kw) -> tuple:
  """Output shape of submodule ``path`` ('/'-joined) of registry model ``name`` (batch 1)."""
  m = models.get_model(name, **kw)
  x = jnp.zeros((1, hw, hw, 3))

  def run(x):
    v = m.init(jax.random.PRNGKey(0), x, train=False)
    return m.apply(v, x, train=False, capture_intermediates=True, mutable=["intermediates"])[1]

  inter = jax.eval_shape(run, x)["intermediates"]
  for part in path.split("/"):
    inter = inter[part]
  return inter["__call__"][0].shape


def test_alexnet_imagenet_stem_too_small_raises():
  m = models.get_model("alexnet", small_inputs=False)
  with pytest.raises(Exception):
    jax.eval_shape(lambda: m.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False))


def test_bad_inputs():
  m = models.get_model("lenet5")
  with pytest.raises(ValueError, match=r"lenet5 expects NHWC input of rank 4 \(N, H, W, C\); got shape \(28, 28, 1\)"):
    jax.eval_shape(lambda: m.init(jax.random.PRNGKey(0), jnp.zeros((28, 28, 1)), train=False))
  with pytest.raises(ValueError, match="floating-point input"):
    jax.eval_shape(lambda: m.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1), jnp.uint8), train=False))
  with pytest.raises(ValueError, match="depth must be 6n\\+2"):
    r = models.get_model("resnet20", depth=21)
    jax.eval_shape(lambda: r.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False))


def test_bfloat16_compute_float32_logits():
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 28, 28, 1))
  m32 = models.get_model("lenet5")
  m16 = models.get_model("lenet5", dtype=jnp.bfloat16)
  v = host_variables(m32, x)
  y32, y16 = fast_jit(lambda v, x: (m32.apply(v, x), m16.apply(v, x)), v, x)
  assert y16.dtype == jnp.float32
  assert jax.tree_util.tree_map(lambda a: a.dtype, v["params"]["head"]) == {
      "bias": jnp.float32, "kernel": jnp.float32}
  np.testing.assert_allclose(y16, y32, atol=0.05 * float(jnp.abs(y32).max()) + 1e-3)


def _torch_adaptive_avg_pool(x: np.ndarray, out: int) -> np.ndarray:
  n, h, w, c = x.shape
  y = np.zeros((n, out, out, c))
  for i in range(out):
    for j in range(out):
      h0, h1 = (i * h) // out, -((-(i + 1) * h) // out)
      w0, w1 = (j * w) // out, -((-(j + 1) * w) // out)
      y[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
  return y


@pytest.mark.parametrize("hw,out", [(6, 6), (12, 6), (13, 6), (4, 6), (5, 3)])
def test_adaptive_avg_pool_matches_torch_semantics(hw, out):
  x = np.random.default_rng(0).normal(size=(2, hw, hw, 3)).astype(np.float32)
  np.testing.assert_allclose(adaptive_avg_pool(jnp.asarray(x), out), _torch_adaptive_avg_pool(x, out), rtol=1e-5, atol=1e-6)


def test_conv_init_scales_follow_true_fan():
  """He init: std sqrt(2 / fan_out) for dense convs, sqrt(2 / (kh*kw)) for depthwise ones."""

  class Two(nn.Module):
    @nn.compact
    def __call__(self, x):
      L = models.Layers()
      return L.conv(64, 3, groups=64, name="dw")(L.conv(64, 3, name="full")(x))

  v = Two().init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 32)))["params"]
  assert v["full"]["kernel"].shape == (3, 3, 32, 64) and v["dw"]["kernel"].shape == (3, 3, 1, 64)
  np.testing.assert_allclose(float(jnp.std(v["full"]["kernel"])), math.sqrt(2 / (9 * 64)), rtol=0.05)
  np.testing.assert_allclose(float(jnp.std(v["dw"]["kernel"])), math.sqrt(2 / 9), rtol=0.1)
