-- Argo CD health check for aiincident.io/AIIncident (argocd-cm key
-- resource.customizations.health.aiincident.io_AIIncident; see docs/gitops.md).
-- An open severity-1 incident is Degraded, so the Application that holds it shows red;
-- Resolved and Closed incidents are Healthy; everything else is on its way: Progressing.
local hs = {}
local status = obj.status or {}
local spec = obj.spec or {}
local phase = status.phase
local severity = status.severity or spec.severity

local function condition(type_)
  for _, c in ipairs(status.conditions or {}) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function describe()
  local words = (spec.category or "incident")
  if severity ~= nil then
    words = "severity " .. tostring(severity) .. " " .. words
  end
  if spec.title ~= nil and spec.title ~= "" then
    words = words .. ": " .. spec.title
  end
  return words
end

if phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to triage the incident"
elseif phase == "Resolved" or phase == "Closed" then
  hs.status = "Healthy"
  hs.message = phase .. ": " .. describe()
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = "Failed: " .. describe()
elseif severity == 1 then
  hs.status = "Degraded"
  hs.message = "Open " .. describe() .. " (" .. phase .. ")"
  local mitigated = condition("Mitigated")
  if mitigated ~= nil and mitigated.message ~= nil and mitigated.message ~= "" then
    hs.message = hs.message .. "; " .. mitigated.message
  end
else
  hs.status = "Progressing"
  hs.message = phase .. ": " .. describe()
end
return hs
