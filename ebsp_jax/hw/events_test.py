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
  # Worst-case accumulator: sum |q| = 78 times 255, plus the sign bit.
  assert ev.acc_high_water_bits == int(np.ceil(np.log2(78 * 255 + 1))) + 1
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
  k = events._find_kernel(flat, layer)  # pylint: disable=protected-access
  assert np.array_equal(k, tree["params"]["conv_init"]["kernel"])
