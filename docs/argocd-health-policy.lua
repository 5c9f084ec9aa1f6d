-- Argo CD health check for aiincident.io/MitigationPolicy and ClusterMitigationPolicy
-- (argocd-cm keys resource.customizations.health.aiincident.io_MitigationPolicy and
-- ..._ClusterMitigationPolicy; see docs/gitops.md). A policy the operator found invalid
-- (Ready=False) is not used at all: Degraded, with the operator's reasons.
local hs = {}
local status = obj.status or {}
local generation = (obj.metadata or {}).generation
local ready = nil
for _, c in ipairs(status.conditions or {}) do
  if c.type == "Ready" then
    ready = c
  end
end
if ready == nil or (generation ~= nil and status.observedGeneration ~= generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to check the policy"
elseif ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "policy is valid and in use"
else
  hs.status = "Degraded"
  hs.message = (ready.reason or "Invalid") .. ": " .. (ready.message or "")
end
return hs
