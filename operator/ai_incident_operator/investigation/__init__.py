"""Investigation: the evidence an incident needs and the root causes it points at.

`evidence.collect` reads the targets, their ReplicaSets, pods, Events, mounted
ConfigMaps, the data pipelines and the policy's PromQL queries into ConfigMap
sections plus `hypotheses.Facts`; `hypotheses.rank` turns the facts into
`status.hypotheses`; `prometheus` is the one way to ask Prometheus. The engine
calls `evidence.collect`, `evidence.write_evidence` and `hypotheses.rank`.
"""
