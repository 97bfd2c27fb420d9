"""Tests of workload extraction from jaxprs (small modules, recursion, published MAC counts)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from ebsp_jax.hw import workload


class _Small(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(8, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), name="c1")(x)
    x = nn.Conv(8, (3, 3), feature_group_count=8, padding="SAME", name="dw")(x)
    x = nn.Conv(4, (3, 3), kernel_dilation=(2, 2), padding="VALID", name="dil")(x)
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(5, name="fc")(x)


def test_small_module_dims_and_macs():
  w = workload.trace_model(_Small(), (16, 16, 3), batch_size=2, name="small")
  names = [l.name for l in w.layers]
  assert names == ["c1", "dw", "dil", "fc"]
  c1, dw, dil, fc = w.layers
  assert (c1.n, c1.m, c1.c, c1.p, c1.q, c1.r, c1.s, c1.stride) == (2, 8, 3, 8, 8, 3, 3, (2, 2))
  assert c1.macs == 2 * 8 * 8 * 8 * 3 * 9
  assert dw.groups == 8 and dw.macs == 2 * 8 * 8 * 8 * 1 * 9
  assert dil.dilation == (2, 2) and (dil.p, dil.q) == (4, 4)
  assert (fc.kind, fc.n, fc.c, fc.m) == ("dense", 2, 4 * 4 * 4, 5)
  assert w.macs == sum(l.macs for l in w.layers)
  assert c1.param_path == "params/c1/kernel" and all(l.weight_param for l in w.layers)
  assert fc.loop_dims() == {"B": 2, "G": 1, "K": 5, "C": 64, "OY": 1, "OX": 1, "FY": 1, "FX": 1}


def test_recursion_into_jit_custom_vjp_scan_and_activation_products():

  @jax.custom_vjp
  def fq(w):
    return jnp.round(w * 4) / 4

  fq.defvjp(lambda w: (fq(w), None), lambda _, g: (g,))

  @jax.jit
  def inner(x, w):
    return jax.lax.dot_general(x, fq(w), (((1,), (0,)), ((), ())))

  def f(params, x):
    y = inner(x, params["w"])

    def body(c, _):
      return jnp.tanh(c @ params["v"]), None

    y, _ = jax.lax.scan(body, y, None, length=3)
    att = jnp.einsum("bi,bj->bij", y, y)          # activation x activation
    return att

  params = {"w": jax.ShapeDtypeStruct((6, 4), jnp.float32),
            "v": jax.ShapeDtypeStruct((4, 4), jnp.float32)}
  x = jax.ShapeDtypeStruct((2, 6), jnp.float32)
  w = workload.trace_layers(f, params, x)
  assert [l.param_path for l in w.layers] == ["w", "v", ""]
  first, scanned, att = w.layers
  assert first.macs == 2 * 6 * 4 and scanned.repeat == 3 and scanned.total_macs == 3 * 2 * 4 * 4
  assert not att.weight_param and att.macs == 2 * 4 * 4


def test_against_the_model_registry_profile():
  from ebsp_jax import models
  for name, ds in (("resnet20", "cifar10"), ("lenet5", "fashion_mnist")):
    w = workload.model_workload(name, ds)
    model = models.get_model(name, num_classes=10)
    prof = models.profile_model(model, models.default_input_shape(name, ds))
    assert [l.macs for l in w.layers] == [p.macs for p in prof]
    assert [l.name for l in w.layers] == [p.path for p in prof]


@pytest.mark.parametrize("name,dataset,published,rel", [
    ("resnet50", "imagenet", 4.09e9, 0.01),
    ("resnet18", "imagenet", 1.82e9, 0.01),
    ("alexnet", "imagenet", 0.714e9, 0.01),
    ("mobilenet_v2", "imagenet", 0.300e9, 0.01),
    ("resnet20", "cifar10", 40.8e6, 0.01),
    # Our vgg16 is the CIFAR variant (one 512-wide classifier layer): 313 M MACs at 32x32.
    # At 224x224 its convolutions are ImageNet VGG-16's (15.35 G); the published 15.5 G adds
    # the 4096-wide fully-connected layers (0.12 G) it does not have.
    ("vgg16", "cifar10", 313.2e6, 0.01),
])
def test_published_mac_counts(name, dataset, published, rel):
  assert workload.model_workload(name, dataset).macs == pytest.approx(published, rel=rel)


def test_summarize():
  s = workload.summarize(workload.model_workload("lenet5", "fashion_mnist"))
  assert s["macs"] == s["conv_macs"] + s["dense_macs"] and s["layers"] == 5 and s["weights"] > 0


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True])
def test_bad_batch_size_is_one_line(batch_size):
  with pytest.raises(ValueError, match=r"batch_size must be a positive int .*; got ") as e:
    workload.model_workload("lenet5", "fashion_mnist", batch_size=batch_size)
  assert "\n" not in str(e.value)
  with pytest.raises(ValueError, match="batch_size must be a positive int"):
    workload.trace_model(_Small(), (16, 16, 3), batch_size=batch_size)
