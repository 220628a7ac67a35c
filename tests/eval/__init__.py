"""Labelled scenario suite for the bottleneck detectors and the planner (`make eval`)."""
