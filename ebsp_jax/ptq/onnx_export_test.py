"""ONNX export of the integer program, checked bit for bit with ONNX Runtime (random models).

Real images and trained models: ``tests/ptq_fashion_mnist_test.py``.
"""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from ebsp_jax import BitPattern, make_rule, ptq, uniform
from ebsp_jax.ptq import onnx_export
from ebsp_jax.ptq.testing import ResidualCNN, images, random_linen_variables

#: ONNX element types that hold integers (or booleans): every tensor of the graph has one.
_INTEGER_TYPES = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT32,
                  onnx.TensorProto.INT64, onnx.TensorProto.BOOL}


def _run(model_proto, levels):
  sess = ort.InferenceSession(model_proto.SerializeToString(),
                              providers=["CPUExecutionProvider"])
  return sess.run(["int_logits"], {"input_levels": np.asarray(levels)})[0]


def _all_integer(model_proto) -> bool:
  inferred = onnx.shape_inference.infer_shapes(model_proto)
  g = inferred.graph
  types = [v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input)
           + list(g.output)] + [t.data_type for t in g.initializer]
  return all(t in _INTEGER_TYPES for t in types)


@pytest.fixture(scope="module")
def residual():
  model = ResidualCNN()
  x = images(40, seed=5)
  variables = random_linen_variables(model, jnp.asarray(x[:1]), seed=5)
  return model, variables, x


def test_residual_cnn_is_bit_identical_with_a_dynamic_batch(residual, tmp_path):
  model, variables, x = residual
  rule = make_rule(BitPattern(6, 3), overrides=[("^Conv_0/", uniform(8))])
  qm = ptq.quantize(model, variables, x, weights=rule)
  path = os.path.join(tmp_path, "r.onnx")
  proto = ptq.export_onnx(qm, x[:2], path)          # exported at batch 2 ...
  assert os.path.getsize(path) > 0
  got = _run(onnx.load(path), qm.quantize_input(x))  # ... run at batch 40
  np.testing.assert_array_equal(got, np.asarray(qm.integer_codes(x)))
  ops = {n.op_type for n in proto.graph.node}
  assert {"ConvInteger", "MatMulInteger"} <= ops
  assert not ops & {"Conv", "MatMul", "Gemm", "QuantizeLinear", "DequantizeLinear"}
  assert _all_integer(proto)
  (inp,), (out,) = proto.graph.input, proto.graph.output
  assert (inp.name, out.name) == ("input_levels", "int_logits")
  assert inp.type.tensor_type.elem_type == out.type.tensor_type.elem_type == onnx.TensorProto.INT32
  # The traced program itself (evaluated by jax) is the integer model's.
  closed, levels = onnx_export.integer_program(qm, x)
  again = jax.core.eval_jaxpr(closed.jaxpr, closed.consts, levels)[0]
  np.testing.assert_array_equal(np.asarray(again), np.asarray(qm.integer_codes(x)))


@pytest.mark.parametrize("overflow", ["wrap", "clip", "saturate"])
def test_narrow_accumulators_wrap_and_clip_as_the_datapath(overflow):
  class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = x.reshape((x.shape[0], -1))
      return nn.Dense(10)(nn.relu(nn.Dense(32)(x)))

  model = MLP()
  x = images(32, seed=7, signed=False)
  variables = model.init(jax.random.key(7), jnp.asarray(x[:1]))
  qm = ptq.quantize(model, variables, x, weights=uniform(8), acc_bits=16, overflow=overflow,
                    calibration="minmax")
  _, counts = qm.integer_model.apply(jnp.asarray(x), with_stats=True)
  assert int(sum(int(c) for c in counts.values())) > 0      # the 16-bit accumulator overflows
  if overflow == "saturate":      # clamps after every add: no ConvInteger/MatMulInteger form
    with pytest.raises(onnx_export.ExportError, match="overflow='saturate'.*at acc_bits=16"):
      ptq.export_onnx(qm, x[:4])
    return
  proto = ptq.export_onnx(qm, x[:4])
  assert {"wrap": "Mod", "clip": "Clip"}[overflow] in {n.op_type for n in proto.graph.node}
  np.testing.assert_array_equal(_run(proto, qm.quantize_input(x)),
                                np.asarray(qm.integer_codes(x)))


class _Small(nn.Module):
  """conv -> ReLU -> flatten -> dense; with ``two_stems`` the input feeds two convs."""

  two_stems: bool = False

  @nn.compact
  def __call__(self, x):
    y = nn.Conv(4, (3, 3))(x)
    if self.two_stems:
      y = y + nn.Conv(4, (3, 3))(x)
    return nn.Dense(3)(nn.relu(y).reshape((x.shape[0], -1)))


def test_what_has_no_integer_onnx_form_is_refused():
  x = images(4, (6, 6, 1), seed=8)
  small = _Small()
  variables = small.init(jax.random.key(0), jnp.asarray(x[:1]))
  cases = [
      (small, dict(mode="dual_lod", rounding="round"), "the 'dual_lod' datapath"),
      (small, dict(activation_bits=10), r"activations of 10 bits \(ConvInteger / "
                                        r"MatMulInteger take at most 8\)"),
      (small, dict(weights=uniform(9)), r"weights 9b\(L8\) do not fit 8 bits"),
      (small, dict(weights=make_rule(BitPattern(6, 3), overrides=[("^Dense_0/", None)])),
       "output is computed in float"),
      (_Small(two_stems=True), {}, r"the network input reaches 2 quantized layers "
                                   r"\(Conv_0, Conv_1\)"),
  ]
  for model, kwargs, match in cases:
    v = variables if model is small else model.init(jax.random.key(0), jnp.asarray(x[:1]))
    qm = ptq.quantize(model, v, x, calibration="minmax", **kwargs)
    with pytest.raises((onnx_export.ExportError, ptq.CannotQuantize), match=match):
      ptq.export_onnx(qm, x[:2])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "resnet50"])
def test_registry_imagenet_models_are_bit_identical(name):
  """ImageNet stems (7x7/2 + padded max pool; depthwise convs, ReLU6), residual adds, global
  mean: random weights, 48x48 inputs."""
  from ebsp_jax import models  # pylint: disable=import-outside-toplevel
  model = models.get_model(name, num_classes=10, small_inputs=False)
  x = images(6, (48, 48, 3), seed=9)
  qm = ptq.quantize(model, random_linen_variables(model, jnp.asarray(x[:1]), seed=9), x,
                    calibration="minmax")
  proto = ptq.export_onnx(qm, x[:2])
  np.testing.assert_array_equal(_run(proto, qm.quantize_input(x)),
                                np.asarray(qm.integer_codes(x)))
