"""Per-layer cost tables against the hardware model's own network evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebsp_jax import hw, models
from ebsp_jax.numerics import BitPattern, layer_patterns
from ebsp_jax.search import costs

FMTS = (BitPattern(6, 3), BitPattern(4, 2), BitPattern(8, 7))


@pytest.fixture(scope="module")
def lenet():
  return hw.model_workload("lenet5", "fashion_mnist")


@pytest.fixture(scope="module")
def table(lenet):
  return costs.layer_costs(lenet, FMTS, search="fast")


def test_rows_are_the_hardware_models_per_layer_results(lenet, table):
  assert table.energy_pj.shape == table.latency_s.shape == table.weight_bits.shape == (5, 3)
  for k, f in enumerate(FMTS):
    acc = hw.build_accelerator("ebsp", pattern_bits=f.bits, pattern_length=f.length)
    res = hw.evaluate_network(lenet, {"ebsp": acc}, search="fast").results["ebsp"]
    np.testing.assert_array_equal(table.energy_pj[:, k], [c.energy_pj for c in res.layers])
    np.testing.assert_array_equal(table.latency_s[:, k],
                                  [c.cycles / (acc.tech.clock_mhz * 1e6) for c in res.layers])
    tot = table.totals([k] * len(table.layers))
    assert tot["energy_pj"] == pytest.approx(res.energy_pj, rel=1e-12)
    assert tot["latency_s"] == pytest.approx(res.latency_s, rel=1e-12)
    assert tot["weight_bits"] == 61470 * f.bits       # LeNet-5's kernel weights


def test_layer_names_are_the_parameter_tree_kernels(table):
  model = models.get_model("lenet5", num_classes=10)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1))))
  assert sorted(table.layers) == sorted(layer_patterns(shapes["params"], lambda p, l: None))
  assert table.layers == ("conv_init", "conv1", "fc1", "fc2", "head")


def test_weight_bits_follow_the_stored_format(lenet, table):
  counts = np.array([l.weight_count for l in lenet.layers])
  np.testing.assert_array_equal(table.weight_bits, counts[:, None] * [6, 4, 8])
  code = costs.layer_costs(lenet, FMTS[:1], search="fast", weight_format="code")
  np.testing.assert_array_equal(code.weight_bits[:, 0], counts * FMTS[0].code_bits)
  assert table.metric("bits") is table.weight_bits
  with pytest.raises(ValueError, match="unknown cost metric 'area'"):
    table.metric("area")


def test_cache_is_used_and_keyed_by_the_design(lenet, table, monkeypatch, tmp_path):
  cache = {}
  first = costs.layer_costs(lenet, FMTS, search="fast", cache=cache)
  assert len(cache) == 3
  path = str(tmp_path / "c" / "costs.json")
  costs.save_cache(path, cache)
  loaded = costs.load_cache(path)

  def boom(*a, **k):
    raise AssertionError("the cache was not used")

  monkeypatch.setattr(hw, "build_accelerator", boom)
  again = costs.layer_costs(lenet, FMTS, search="fast", cache=loaded)
  for attr in ("energy_pj", "latency_s", "weight_bits"):
    np.testing.assert_array_equal(getattr(again, attr), getattr(first, attr))
    np.testing.assert_array_equal(getattr(again, attr), getattr(table, attr))
  with pytest.raises(AssertionError, match="cache was not used"):   # another design: a miss
    costs.layer_costs(lenet, FMTS, search="fast", cache=loaded, activation_bits=4)
  with pytest.raises(AssertionError, match="cache was not used"):   # another mapper preset
    costs.layer_costs(lenet, FMTS, search="default", cache=loaded)


def test_bad_cache_file(tmp_path):
  assert costs.load_cache(str(tmp_path / "none.json")) == {}
  p = tmp_path / "bad.json"
  p.write_text("[1, 2]")
  with pytest.raises(ValueError, match="is not a JSON object"):
    costs.load_cache(str(p))
  p.write_text("{")
  with pytest.raises(ValueError, match="is not readable JSON"):
    costs.load_cache(str(p))


@pytest.mark.parametrize("fmts,kwargs,needle", [
    ((BitPattern(4, 2, signed=False),), {}, "costs signed BitPatterns only"),
    ((BitPattern(4, 2),), {"pattern_bits": 6}, "pattern_bits: set by each candidate format"),
])
def test_bad_requests(lenet, fmts, kwargs, needle):
  with pytest.raises(ValueError, match=needle):
    costs.layer_costs(lenet, fmts, **kwargs)


def test_layer_without_a_kernel_is_refused():
  def attention(params, x):
    q = x @ params["q"]["kernel"]
    return (q @ q.T) @ x                        # activation x activation products

  wl = hw.trace_layers(attention, {"q": {"kernel": jnp.zeros((4, 4))}}, jnp.zeros((3, 4)))
  with pytest.raises(ValueError, match="has no kernel parameter"):
    costs.workload_layer_names(wl)


def test_hw_version_leaves_out_only_existing_non_ebsp_sources():
  import os
  d = os.path.dirname(hw.__file__)
  assert all(os.path.exists(os.path.join(d, f)) for f in costs.NOT_EBSP_COST)
  assert "dataflow.py" not in costs.NOT_EBSP_COST and "designs/ebsp.py" not in costs.NOT_EBSP_COST
  assert len(costs.hw_version()) == 16
