"""ai-incident-operator: runs the incident-response playbook for AI systems on Kubernetes.

The pure core (triage, policy matching, planning, the ledger, the state machine)
lives in plain modules over dicts; `handlers` registers the kopf handlers, `kube`
holds the Kubernetes calls, `cli` is the `aiincident` command.
"""

GROUP = "aiincident.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

__version__ = "0.1.0"
