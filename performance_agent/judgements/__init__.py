"""Canary judgements for outside rollout controllers (Argo Rollouts, Flagger): the workflow judge, as a service."""
