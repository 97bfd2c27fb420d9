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


def test_registry_models_layer_by_layer():
  """The traced layers of registry models against shapes and MACs worked out by hand."""
  w = workload.trace_model(_registry("resnet20"), (32, 32, 3), batch_size=2)
  first, last = w.layers[0], w.layers[-1]
  assert (first.name, first.kind, first.param_path) == ("conv_init", "conv",
                                                     "params/conv_init/kernel")
  assert (first.n, first.input_hw, first.p, first.q, first.m) == (2, (32, 32), 32, 32, 16)
  assert first.macs == 2 * 32 * 32 * 16 * 3 * 3 * 3
  assert (last.name, last.kind, last.macs) == ("head", "dense", 2 * 64 * 10)
  proj = [l for l in w.layers if l.name.endswith("proj_conv")]
  assert [l.name for l in proj] == ["stage2_block0/proj_conv", "stage3_block0/proj_conv"]
  assert (proj[0].p, proj[0].q, proj[0].m, proj[0].stride) == (16, 16, 32, (2, 2))
  assert len(w.layers) == 1 + 9 * 2 + 2 + 1          # stem, 9 blocks x 2 convs, 2 proj, head
  mb = workload.trace_model(_registry("mobilenet_v2", num_classes=1000), (224, 224, 3))
  dw = next(l for l in mb.layers if l.name == "stage2_block0/dw_conv")
  assert (dw.groups, dw.c, dw.m, dw.r, dw.s) == (96, 96, 96, 3, 3)
  assert (dw.p, dw.q) == (56, 56) and dw.macs == 56 * 56 * 96 * 9


def _registry(name, **kw):
  from ebsp_jax import models  # pylint: disable=import-outside-toplevel
  return models.get_model(name, **kw)


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


def test_paper_networks_have_the_published_mac_counts():
  from ebsp_jax.hw.workload import paper_workload
  # Eyeriss JSSC 2017: AlexNet CONV1-5 "666 million MACs per 227x227 image", VGG-16 "15.3
  # billion MACs per 224x224 image" (its 13 convolutions).
  alex = paper_workload("alexnet_krizhevsky2012", conv_only=True)
  assert round(alex.macs / 1e6) == 666 and len(alex.layers) == 5
  vgg = paper_workload("vgg16_simonyan2015", conv_only=True)
  assert round(vgg.macs / 1e8) == 153 and len(vgg.layers) == 13
  # Bit Fusion's artifact (results/eyeriss_results.csv, column ALU = MACs of a batch of 16):
  # AlexNet conv1_a 843321600 and conv2_a 1791590400 (one of the two halves), fc1 603979776;
  # ResNet-18 conv1 1888223232, conv2_1_a 205520896, conv3_1_b 1849688064; LeNet-5 conv0
  # 13107200, conv1 209715200, fc1 33554432.
  def per_layer(key):
    return {l.name: l.macs for l in paper_workload(key, batch_size=16).layers}
  a = per_layer("alexnet_krizhevsky2012")
  assert (a["conv1"], a["conv2"], a["fc1"]) == (2 * 843321600, 2 * 1791590400, 603979776)
  r = per_layer("resnet18_bitfusion")
  assert (r["conv1"], r["conv2_1_a"], r["conv3_1_b"]) == (1888223232, 205520896, 1849688064)
  assert len(r) == 17
  l5 = per_layer("lenet5_bitfusion")
  assert (l5["conv0"], l5["conv1"], l5["fc1"]) == (13107200, 209715200, 33554432)
  with pytest.raises(ValueError, match="unknown paper network 'x'"):
    paper_workload("x")
