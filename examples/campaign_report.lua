-- Report on automation and campaigns: every flow, every email and SMS campaign counted by
-- channel and status, and the metrics (event names) events are recorded under. Only reads, so
-- no --force is needed.
--
--   kosmo integrations:lua examples/campaign_report.lua --sandbox --json

local klaviyo = app.integrations.klaviyo

-- Walk every page of a list function and return all items. `limit` is how many items a call
-- returns (up to 100), whatever the size of Klaviyo's own pages (flows come 50 a page).
local function all(fn, args)
  local items, cursor = {}, nil
  repeat
    args.page_cursor = cursor
    local page = fn(args)
    for _, item in ipairs(page.items) do
      items[#items + 1] = item
    end
    cursor = page.next_cursor
  until cursor == nil
  return items
end

local function by_status(items)
  local counts = {}
  for _, item in ipairs(items) do
    local status = item.status or "unknown"
    counts[status] = (counts[status] or 0) + 1
  end
  return counts
end

local flows = all(klaviyo.list_flows, {limit = 100})
local report = {
  flows = {total = #flows, by_status = by_status(flows)},
  campaigns = {},
  metrics = {},
}

-- Without a channel, email and SMS campaigns come together, newest first; each says its channel.
local campaigns = all(klaviyo.list_campaigns, {limit = 100})
for _, channel in ipairs({"email", "sms"}) do
  local of_channel = {}
  for _, c in ipairs(campaigns) do
    if c.channel == channel then
      of_channel[#of_channel + 1] = c
    end
  end
  report.campaigns[channel] = {total = #of_channel, by_status = by_status(of_channel)}
  print(string.format("%s campaigns: %d", channel, #of_channel))
end
if campaigns[1] then
  report.latest_campaign = campaigns[1].name
end

for _, m in ipairs(all(klaviyo.list_metrics, {})) do
  report.metrics[#report.metrics + 1] = string.format("%s (%s)", m.name, m.integration_name or "?")
end

print(string.format("flows: %d, metrics: %d", #flows, #report.metrics))
return report
