"""Tests of the LayerEvents schema and of statistics derived from weight codes."""

import json

import numpy as np
import pytest

from ebsp_jax.hw import events
from ebsp_jax.hw.workload import Layer
from ebsp_jax.numerics import BitPattern


def _layer(weights: int, uses: int = 4) -> Layer:
  return Layer("l", "dense", n=uses, m=1, c=weights)


def test_events_from_codes_counts():
  q = np.array([0, 0, 1, 3, 7, 8, 12, 28, -14, -5]).reshape(10, 1)   # 6b(L3) levels
  ev = events.events_from_codes(q, _layer(10, uses=4), 6, 3)
  assert ev.macs == 40 and ev.zero_weight_products == 8
  # shifts: 1,3,7,5 -> 0; 8,12,14 -> 1; 28 -> 2
  assert ev.shift_hist == (16, 12, 4)
  assert ev.zero_weight_fraction == pytest.approx(0.2)
  assert ev.shifted_fraction == pytest.approx(16 / 32)
  assert ev.lut_entries_used == 6              # mantissas 1, 3, 4, 5, 6, 7
  # A static bound, not a high-water mark (no data seen): sum |q| = 78 times 255, + sign bit.
  assert ev.acc_high_water_bits is None
  assert ev.acc_bound_bits == (78 * 255).bit_length() + 1
  # Signed (sign-magnitude) activations: |a| <= 127.
  signed = events.events_from_codes(q, _layer(10, uses=4), 6, 3, activation_signed=True)
  assert signed.acc_bound_bits == (78 * 127).bit_length() + 1
  # One LOD per weight element (the encoding), like ebsp_jax.arith.events, not per product.
  assert ev.lod_uses == 10 and ev.lut_reads == ev.adds == 32
  act = ev.activity()
  assert (act.nonzero_fraction, act.shifted_fraction) == (pytest.approx(0.8), pytest.approx(0.5))


def test_off_grid_and_wrong_size_raise():
  with pytest.raises(ValueError, match="off the"):
    events.events_from_codes(np.array([9]), _layer(1), 6, 3)     # 1001b needs 4 bits
  with pytest.raises(ValueError, match="weight codes"):
    events.events_from_codes(np.zeros(3), _layer(2), 6, 3)


def test_split_codes_matches_numerics_encode():
  from ebsp_jax.numerics import encode
  p = BitPattern(7, 3)
  q = p.levels
  nz, shift, mant = events.split_codes(q, 3)
  sign, s2, m2 = encode(q, p)
  assert np.array_equal(shift[nz], np.asarray(s2)[nz]) and np.array_equal(mant[nz],
                                                                          np.asarray(m2)[nz])


def test_schema_roundtrip_and_teammate_keys(tmp_path):
  rec = {"name": "params/stage1/conv1/kernel", "macs": 100, "outputs": 10, "contraction": 10,
         "zero_weight_products": 20, "zero_activation_products": 5, "lut_reads": 80,
         "shift_hist": [50, 30], "adds": 80, "lut_fills": 7, "lut_fill_adds": 21,
         "lod_uses": 12, "acc_high_water_bits": 19, "acc_final_bits": 18}
  ev = events.LayerEvents.from_dict(rec)
  assert ev.name == "stage1/conv1" and ev.lut_fills == 7 and ev.zero_activation_products == 5
  path = tmp_path / "ev.json"
  events.save_events([ev], str(path))
  back = events.load_events(str(path))
  assert back["stage1/conv1"] == ev
  (tmp_path / "d.json").write_text(json.dumps({"x": dict(rec, name="x")}))
  assert set(events.load_events(str(tmp_path / "d.json"))) == {"x"}
  with pytest.raises(ValueError, match="shift_hist"):
    events.LayerEvents.from_dict(dict(rec, shift_hist=[1, 2]))
  with pytest.raises(ValueError, match="lacks"):
    events.LayerEvents.from_dict({"name": "a"})


def test_params_npz_float_kernels_are_quantized(tmp_path):
  from ebsp_jax.hw import workload
  wl = workload.model_workload("lenet5", "fashion_mnist")
  rng = np.random.default_rng(0)
  flat = {}
  for l in wl.layers:
    shape = (l.r, l.s, l.c // l.groups, l.m) if l.kind == "conv" else (l.c, l.m)
    flat[l.param_path] = rng.normal(size=shape).astype(np.float32)
  path = tmp_path / "p.npz"
  np.savez(path, **flat)
  loaded = events.load_params(str(path))
  ev = events.events_from_params(loaded, wl, 6, 3)
  assert set(ev) == {l.name for l in wl.layers}
  first = ev[wl.layers[0].name]
  assert first.macs == wl.layers[0].macs
  assert 0 <= first.zero_weight_fraction < 0.5 and 0 < first.shifted_fraction < 1
  s = events.summarize_events(list(ev.values()))
  assert s["macs"] == wl.macs and s["lut_entries_used_max"] <= 8
  with pytest.raises(ValueError, match="does not exist"):
    events.load_params(str(tmp_path / "missing"))


def test_uniform_events_default():
  ev = events.uniform_events(_layer(31, uses=1), 6, 3)
  assert ev.zero_weight_products == 1 and sum(ev.shift_hist) == 30


def test_orbax_checkpoint_directory(tmp_path):
  import orbax.checkpoint as ocp
  tree = {"params": {"conv_init": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)}},
          "opt_state": {"mu": {"conv_init": {"kernel": np.zeros((1, 1, 2, 3), np.float32)}}}}
  ocp.PyTreeCheckpointer().save(str(tmp_path / "ckpt" / "7" / "default"), tree)
  flat = events.load_params(str(tmp_path / "ckpt"))
  assert "params/conv_init/kernel" in flat
  layer = Layer("conv_init", "conv", n=1, m=3, c=2, param_path="params/conv_init/kernel")
  k = events.find_kernel(flat, layer)
  assert np.array_equal(k, tree["params"]["conv_init"]["kernel"])
  # Exact paths only: a kernel nested under another prefix is not guessed at (it used to be
  # found by its suffix), nor one of another size.
  assert events.find_kernel({"state/params/conv_init/kernel": k}, layer) is None
  assert events.find_kernel({"conv_init/kernel": k}, layer) is k
  assert events.find_kernel({"params/conv_init/kernel": k[..., :2]}, layer) is None


def test_lod_uses_and_reads_match_the_emulator():
  """hw.events and ebsp_jax.arith.events count the same things for the same dense layer."""
  import jax.numpy as jnp
  from ebsp_jax.arith import events as arith_events
  p = BitPattern(6, 3)
  rng = np.random.default_rng(1)
  w = rng.choice(np.asarray(p.levels), size=(12, 5)).astype(np.int32)
  w[0, :] = 0
  x = rng.integers(1, 256, size=(3, 12)).astype(np.int32)       # no zero activations
  ref = arith_events.dot_general_events(jnp.asarray(x), jnp.asarray(w), (((1,), (0,)), ((), ())),
                                        pattern=p, act_bits=8, act_signed=False)
  ev = events.events_from_codes(w, Layer("d", "dense", n=3, m=5, c=12), 6, 3)
  for key in ("macs", "zero_weight_products", "lut_reads", "adds", "lod_uses"):
    assert getattr(ev, key) == ref[key], key
  assert list(ev.shift_hist) == ref["shift_hist"]
  # The static bound holds the recorded high-water mark.
  assert ev.acc_bound_bits >= ref["acc_high_water_bits"]


def test_lenet_first_layer_lod_uses_are_its_weights():
  from ebsp_jax.hw import workload
  wl = workload.model_workload("lenet5", "fashion_mnist")
  layer = wl.layers[0]
  ev = events.uniform_events(layer, 6, 3)
  assert ev.lod_uses == layer.weight_count == 150


@pytest.mark.parametrize("content,needle", [
    ('{"model": "lenet5", "macs": 1}', "got an object whose 'model' is a string, not a record"),
    ('"text"', "got a string"),
    ("[1, 2]", "record 0 is a number"),
    ("[]", "no records"),
    ("{not json", "is not readable JSON"),
    ('[{"name": "a", "macs": "x", "zero_weight_products": 0, "shift_hist": []}]',
     "'macs' must be an integer"),
    ('[{"name": "a", "macs": 4, "zero_weight_products": 0, "shift_hist": 4}]',
     "'shift_hist' must be a list"),
    ('[{"name": "a", "macs": 4, "zero_weight_products": 0, "shift_hist": [4]},'
     ' {"name": "a", "macs": 4, "zero_weight_products": 0, "shift_hist": [4]}]',
     "more than one record"),
])
def test_load_events_rejects_wrong_structure_in_one_line(tmp_path, content, needle):
  path = tmp_path / "ev.json"
  path.write_text(content)
  with pytest.raises(ValueError) as e:
    events.load_events(str(path))
  msg = str(e.value)
  assert needle in msg and "\n" not in msg and str(path) in msg


def test_load_events_missing_file(tmp_path):
  with pytest.raises(ValueError, match="does not exist"):
    events.load_events(str(tmp_path / "none.json"))
