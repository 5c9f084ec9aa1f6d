"""The Alertmanager intake: alerts posted to the operator become AIIncidents.

`mapping` (pure) checks a webhook payload and maps each alert to the incident it
belongs to; `store` folds a group of alerts into that incident on the apiserver;
`server` is the aiohttp app `cli._run` starts beside kopf (`/api/v1/alerts`,
`/healthz`, `/readyz`, `/metrics`); `limits` (pure) bounds a sender's reach and work;
`connections` gives the server's connections read deadlines, a cap and JSON errors.
"""
