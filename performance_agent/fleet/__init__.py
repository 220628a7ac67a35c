"""The instance registry: registrations, their scrape settings and SLO targets, and the /instances API."""
