"""Atomic, strict output files."""

import json
import math
import os

import numpy as np
import pytest

from ebsp_jax.train import files


def test_json_round_trip_replaces_atomically(tmp_path):
  path = str(tmp_path / "r.json")
  files.write_json_atomic(path, {"x": 1, "b": [0.5, None]})
  files.write_json_atomic(path, {"x": 2})
  with open(path) as f:
    assert json.load(f) == {"x": 2}
  assert os.listdir(tmp_path) == ["r.json"]          # no temporary left behind


@pytest.mark.parametrize("bad, where", [
    ({"quant_loss": math.nan}, "quant_loss"),
    ({"a": {"b": [1.0, math.inf]}}, "a/b/1"),
    ([-math.inf], "0"),
])
def test_json_refuses_nan_and_infinity_and_keeps_the_old_file(tmp_path, bad, where):
  path = str(tmp_path / "r.json")
  files.write_json_atomic(path, {"old": True})
  with pytest.raises(ValueError, match=f"refusing to write {path}: '{where}' is not a finite "
                                       "number") as e:
    files.write_json_atomic(path, bad)
  assert "\n" not in str(e.value)
  with open(path) as f:
    assert json.load(f) == {"old": True}               # untouched
  assert os.listdir(tmp_path) == ["r.json"]


def test_first_nonfinite():
  assert files.first_nonfinite({"a": 1.0, "b": "nan", "c": [1, 2]}) is None
  assert files.first_nonfinite({"a": {"z": float("nan")}}) == "a/z"
  assert files.first_nonfinite(float("inf")) == "<top level>"


def test_npz_atomic(tmp_path):
  path = str(tmp_path / "p.npz")
  arrays = {"conv/kernel": np.arange(6.0).reshape(2, 3), "b": np.int8([1, -2])}
  files.write_npz_atomic(path, arrays)
  with np.load(path) as z:
    assert sorted(z) == sorted(arrays)
    for k, v in arrays.items():
      np.testing.assert_array_equal(z[k], v)
      assert z[k].dtype == v.dtype
  assert os.listdir(tmp_path) == ["p.npz"]
