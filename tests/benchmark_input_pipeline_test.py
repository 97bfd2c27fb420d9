"""Smoke test of benchmarks/input_pipeline.py: the set it writes and the figures it reports."""

from __future__ import annotations

import io
import json

import numpy as np
import PIL.Image
import pytest

from benchmarks import input_pipeline as bench


def test_synthetic_set_is_imagenet_like_jpegs(tmp_path):
  jpegs = bench.synthetic_jpegs(12)
  sizes = [PIL.Image.open(io.BytesIO(j)).size for j in jpegs]
  assert all(j[:2] == b"\xff\xd8" for j in jpegs)                    # JPEG files
  assert all(330 <= w <= 500 and 280 <= h <= 420 for w, h in sizes)
  assert len(set(sizes)) > 6                                         # varied sizes
  bench.write_imagenet_like(str(tmp_path), jpegs)
  stored = bench.stored_jpegs(str(tmp_path), "train")
  assert sorted(stored) == sorted(jpegs)                             # stored as they are


def test_benchmark_reports_both_clocks_and_ratios(tmp_path):
  out = tmp_path / "ip.json"
  bench.main([f"--output={out}", "--images=16", "--batch=8", "--repeats=1", "--workers=0,2",
              "--uint8"])
  res = json.loads(out.read_text())
  assert res["benchmark"] == "input_pipeline" and res["images"] == 16 and "device" in res
  for mode in ("train", "eval"):
    r = res["results"][mode]
    assert set(r) == {"bare", "pipeline_0w", "pipeline_2w", "pipeline_1w_uint8"}
    for k, v in r.items():
      assert v["images_per_s"] == pytest.approx(1 / v["wall_s_per_image"])
      assert v["wall_ratio"] == pytest.approx(v["wall_s_per_image"]
                                              / r["bare"]["wall_s_per_image"])
      assert v["cpu_ratio"] == pytest.approx(v["cpu_s_per_image"] / r["bare"]["cpu_s_per_image"])
      assert len(v["wall_samples"]) == 1 and np.all(np.asarray(v["cpu_samples"]) > 0)
  with pytest.raises(SystemExit):
    bench.main([f"--output={out}", "--images=4", "--batch=8"])
