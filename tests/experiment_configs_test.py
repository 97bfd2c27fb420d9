"""experiments/configs/*.flags: valid configurations, and the commands in their headers."""

from __future__ import annotations

import glob
import os
import re
import shlex

import pytest
from absl import flags

from ebsp_jax.train import flags as train_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "experiments", "configs", "*.flags")))
DATASET = {"fashion_mnist": "fashion_mnist", "fashion_mnist_table": "fashion_mnist",
           "cifar10": "cifar10", "imagenet": "imagenet"}


def _config(dataset, args):
  fv = flags.FlagValues()
  train_flags.define_flags(fv)
  fv(["prog"] + args)
  return train_flags.config_from_flags(dataset, fv)


def _header_commands(path):
  """The ``python experiments/<main>.py ...`` commands in the file's comment header, as argv
  lists (backslash continuations joined, the flagfile made absolute, placeholders dropped)."""
  text = []
  with open(path) as f:
    for line in f:
      if not line.startswith("#"):
        break
      text.append(line[1:].strip())
  joined = re.sub(r"\s+", " ", " ".join(text).replace("\\", " "))
  out = []
  for m in re.finditer(r"python (experiments/\w+\.py)((?: --[^ ]+)+)", joined):
    args = [a.replace("--flagfile=experiments/", f"--flagfile={ROOT}/experiments/")
            for a in shlex.split(m.group(2))
            if not re.fullmatch(r"--\w+=[A-Z]", a)]   # a placeholder (--pattern_bits=B)
    out.append((m.group(1), args))
  return out


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_and_header_commands_are_valid(path):
  name = os.path.basename(path)[:-len(".flags")]
  cfg = _config(DATASET[name], [f"--flagfile={path}", "--workdir=/tmp/x"])
  assert cfg.model
  commands = _header_commands(path)
  assert commands, "the header shows how to run it"
  for script, args in commands:
    assert os.path.isfile(os.path.join(ROOT, script))
    _config(DATASET[name], args)       # every header command is a valid configuration


def test_imagenet_flags_agree_with_their_header():
  """The header: a float checkpoint made once, then EBSP from it with these flags."""
  path = os.path.join(ROOT, "experiments", "configs", "imagenet.flags")
  with open(path) as f:
    assert "from a float checkpoint" in f.readline()
  (s1, float_run), (s2, ebsp_run) = _header_commands(path)
  assert s1 == s2 == "experiments/imagenet.py"
  float_cfg, ebsp_cfg = _config("imagenet", float_run), _config("imagenet", ebsp_run)
  assert (float_cfg.float_epochs, float_cfg.admm_epochs, float_cfg.finetune_epochs) == (90, 0, 0)
  assert float_cfg.pretrained is None and not float_cfg.integer_eval
  # The EBSP run trains no float epochs and starts from the float run's workdir.
  assert ebsp_cfg.float_epochs == 0 and ebsp_cfg.admm_epochs > 0
  assert ebsp_cfg.pretrained == float_cfg.workdir
  assert ebsp_cfg.fingerprint() == dict(
      _config("imagenet", [f"--flagfile={path}", f"--workdir={ebsp_cfg.workdir}",
                           f"--pretrained={ebsp_cfg.pretrained}"]).fingerprint())
  # Both share the model, data and weight format: the float model fits the EBSP run.
  for k in ("model", "pattern_bits", "pattern_length", "first_last", "seed"):
    assert getattr(float_cfg, k) == getattr(ebsp_cfg, k), k
