"""What the agent offers a team's own Prometheus: scrape targets (`http_sd_configs`) and SLO burn-rate rules."""
