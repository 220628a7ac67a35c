"""Tests that keep the documentation honest: executable API examples and the Grafana dashboard."""
