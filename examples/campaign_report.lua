-- Report on automation and campaigns: every flow and every email and SMS campaign, counted
-- by status. Only reads, so no --force is needed.
--
--   kosmo integrations:lua examples/campaign_report.lua --sandbox --json

local klaviyo = app.integrations.klaviyo

-- Walk every page of a list function and return all items.
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

local flows = all(klaviyo.list_flows, {limit = 50})
local report = {
  flows = {total = #flows, by_status = by_status(flows)},
  campaigns = {},
}
for _, channel in ipairs({"email", "sms"}) do
  local campaigns = all(klaviyo.list_campaigns, {channel = channel, limit = 100})
  report.campaigns[channel] = {total = #campaigns, by_status = by_status(campaigns)}
  print(string.format("%s campaigns: %d", channel, #campaigns))
end
print(string.format("flows: %d", #flows))
return report
