-- Argo CD health check for kseal's SealedSecret (kseal.dev/v1alpha1), the
-- argocd-cm key resource.customizations.health.kseal.dev_SealedSecret.
--
--   Healthy      kseal-controller unsealed this generation (Ready=True)
--   Progressing  a generation the controller has not reported on yet, or a transient
--                failure it retries by itself (Ready=False, not Stalled)
--   Degraded     a failure only a change can fix (Stalled=True): the message is
--                kseal's reason, then its message (docs/controller.md lists them)
--
-- Written for what Argo CD gives a check from argocd-cm: the base and table
-- libraries (no string library).
local health = {
  status = "Progressing",
  message = "Waiting for kseal-controller to unseal this generation",
}
if obj.status == nil or obj.metadata.generation == nil or
    obj.status.observedGeneration ~= obj.metadata.generation then
  return health
end
local conditions = obj.status.conditions
if type(conditions) ~= "table" then
  conditions = {}
end
local ready, stalled
for _, condition in ipairs(conditions) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Stalled" then
    stalled = condition
  end
end
if stalled ~= nil and stalled.status == "True" then
  health.status = "Degraded"
  health.message = (stalled.reason or "") .. ": " .. (stalled.message or "")
elseif ready ~= nil and ready.status == "True" then
  health.status = "Healthy"
  health.message = ready.message or ""
elseif ready ~= nil and ready.status == "False" then
  health.message = (ready.reason or "") .. ": " .. (ready.message or "")
end
return health
