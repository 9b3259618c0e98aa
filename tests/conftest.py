"""Shared pytest setup; each area keeps its fixtures in its own module."""

from daemon_fixtures import *
from engine_fixtures import *
