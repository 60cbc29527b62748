"""Several processes on one study: local workers, a killed worker, database servers, the Hydra sweeper."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid

import optuna
import pytest

from tests_tuning_support import ROOT, subprocess_env, tune_command  # noqa: F401  (replaced below)
