"""EBSP on ImageNet: float training -> ADMM QAT -> projection + fine-tuning -> evaluation.

    python experiments/imagenet.py --flagfile=experiments/configs/imagenet.flags --workdir=runs/imagenet

Flags: `python experiments/imagenet.py --help`; the pipeline is in ebsp_jax/train/trainer.py.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from ebsp_jax.train import flags as train_flags  # noqa: E402

train_flags.define_flags(model="resnet18")
flags.adopt_module_key_flags(train_flags)  # --help lists them

if __name__ == "__main__":
  train_flags.main("imagenet")
