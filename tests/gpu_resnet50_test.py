"""benchmarks.gpu_resnet50: the issue-14 record from the stage outputs of gpu_resnet50.sh."""

import json
import os

from benchmarks import gpu_resnet50

KEYS = ("device", "date", "jax", "batch", "integer_img_s", "bf16_img_s", "float32_img_s",
        "integer_logits_equal_cpu", "admm_step_ms", "float_step_ms")


def _write(d, name, obj):
  with open(os.path.join(d, name), "w") as f:
    f.write(obj if isinstance(obj, str) else json.dumps(obj))


def _row(case, img_s, equal, network="resnet50"):
  return dict(network=network, batch=256, case=case, images_per_s=img_s,
              integer_logits_equal_cpu=equal)


def test_record_from_every_stage(tmp_path):
  d = str(tmp_path)
  _write(d, "arith_gpu.json", dict(
      device="GPU: H100", date="2026-12-06", jax_version="0.11.2",
      networks=[_row("float32", 9000.0, True), _row("bfloat16", 23000.0, True),
                _row("integer (fast, auto)", 26000.0, True),
                _row("integer (fast, int32)", 21000.0, True),
                _row("integer (fast, auto)", 1.0, None, network="resnet20")]))
  _write(d, "train_step.json", dict(admm_step_ms=130.0, float_step_ms=110.0, model="resnet50",
                                    batch=256, admm_over_float=130 / 110))
  _write(d, "exactness.xml", '<testsuites><testsuite tests="59" failures="1" errors="0" '
                             'skipped="2"/></testsuites>')
  _write(d, "stages.txt", "exact 1 40\npallas 0 90\nnetworks 0 200\ntrain skipped 0\n")
  rec = gpu_resnet50.assemble(d)
  assert all(k in rec for k in KEYS)
  assert rec["integer_img_s"] == 26000.0 and rec["integer_case"] == "integer (fast, auto)"
  assert rec["bf16_img_s"] == 23000.0 and rec["float32_img_s"] == 9000.0
  assert rec["batch"] == 256 and rec["jax"] == "0.11.2"
  assert rec["integer_logits_equal_cpu"] is True and rec["target_met"] is True
  assert rec["admm_step_ms"] == 130.0 and rec["float_step_ms"] == 110.0
  assert rec["exactness"] == dict(tests=59, failures=1, errors=0, skipped=2, passed=56)
  assert rec["stages"]["exact"]["rc"] == 1 and rec["stages"]["train"]["rc"] == "skipped"


def test_missing_or_failed_stages_are_null_not_guessed(tmp_path):
  d = str(tmp_path)
  _write(d, "arith_gpu.json", dict(networks=[_row("integer (fast, auto)", 30000.0, False),
                                             _row("float32", 9000.0, False)]))
  _write(d, "train_step.json", "{not json")
  rec = gpu_resnet50.assemble(d)
  assert rec["integer_logits_equal_cpu"] is False and rec["target_met"] is False
  assert rec["bf16_img_s"] is None and rec["admm_step_ms"] is None
  assert rec["exactness"] is None and rec["stages"] == {}
  empty = gpu_resnet50.assemble(str(tmp_path / "nothing"))
  assert all(empty[k] is None for k in KEYS) and empty["target_met"] is None


def test_unchecked_logits_leave_the_target_open(tmp_path):
  d = str(tmp_path)
  _write(d, "arith_gpu.json", dict(networks=[_row("integer (fast, auto)", 30000.0, None)]))
  rec = gpu_resnet50.assemble(d)
  assert rec["integer_logits_equal_cpu"] is None and rec["target_met"] is None
