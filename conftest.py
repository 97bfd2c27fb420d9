"""Shared pytest configuration: hypothesis profiles (default: fast; `HYPOTHESIS_PROFILE=thorough`)."""

import os

from hypothesis import settings

settings.register_profile("default", max_examples=60, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=1000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
