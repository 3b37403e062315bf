"""Renderers: pure functions from typed results to Slack/PagerDuty payloads, the HTML report, charts and words."""
