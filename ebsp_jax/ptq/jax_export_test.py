"""``jax.export`` of integer models built with default arguments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from ebsp_jax import BitPattern, make_rule, models, ptq, quant
from ebsp_jax.arith import onednn
from ebsp_jax.ptq.testing import ResidualCNN, images, random_linen_variables


@pytest.fixture(scope="module")
def lenet_integer():
  """``quant.to_integer`` with its defaults (``accumulation='auto'``) on LeNet-5."""
  model = models.get_model("lenet5", num_classes=10, **quant.fake_quant_injection(8))
  x = jnp.asarray(images(8, (28, 28, 1), seed=2))
  variables = model.init(jax.random.key(0), x[:1])
  _, upd = model.apply(variables, x, mutable=["quant_stats"])
  variables = {**variables, **upd}
  return quant.to_integer("lenet5", variables, weight_rule=make_rule(BitPattern(6, 3))), x


def test_default_integer_model_exports_and_reloads_bit_identically(lenet_integer):
  imodel, x = lenet_integer
  exported = ptq.export_jax(imodel, x)
  text = exported.mlir_module()
  assert "custom_call" not in text          # no oneDNN call, no checkify effect
  restored = export.deserialize(exported.serialize())
  np.testing.assert_array_equal(np.asarray(restored.call(x)), np.asarray(imodel.apply(x)))


@pytest.mark.skipif(not onednn.available(), reason="the oneDNN kernel is not built here")
def test_plain_jax_export_of_the_default_path_is_what_needed_the_swap(lenet_integer):
  imodel, x = lenet_integer
  with pytest.raises(Exception, match="custom call|ErrorEffect|nullary"):
    export.export(jax.jit(imodel.apply))(x)


def test_ptq_model_logits_and_codes_export():
  model = ResidualCNN()
  x = images(16, seed=4)
  qm = ptq.quantize(model, random_linen_variables(model, jnp.asarray(x[:1]), seed=4), x)
  for output, want in (("logits", qm.integer(x)), ("codes", qm.integer_codes(x))):
    restored = export.deserialize(ptq.export_jax(qm, x, output=output).serialize())
    got = restored.call(jnp.asarray(x))
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  with pytest.raises(ValueError, match="output='probs' is not supported; allowed: logits, codes"):
    ptq.export_jax(qm, x, output="probs")
