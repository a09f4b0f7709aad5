"""Suite-wide settings: structlog filtered to warnings so test output stays readable."""

import logging

import structlog

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
