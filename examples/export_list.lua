-- Export a list: create it, subscribe a few profiles, then walk its members page by page
-- (`next_cursor` feeds straight back as `page_cursor`) and return how many there are.
--
--   kosmo integrations:lua examples/export_list.lua --sandbox --force --json

local klaviyo = app.integrations.klaviyo
local run = math.random(1e9)

local list = klaviyo.create_list({name = "Export example " .. run})
local wanted = 7
for i = 1, wanted do
  klaviyo.subscribe_profile({list_id = list.id, email = string.format("member%d.%d@example.com", i, run)})
end

-- Small pages, to show the cursor loop; real exports would use limit = 100.
local emails, pages, cursor = {}, 0, nil
repeat
  local page = klaviyo.list_list_profiles({list_id = list.id, limit = 3, page_cursor = cursor})
  pages = pages + 1
  for _, p in ipairs(page.items) do
    emails[#emails + 1] = p.email
  end
  cursor = page.next_cursor
until cursor == nil

-- get_list counts the members too (Klaviyo's `profile_count`).
local counted = klaviyo.get_list({list_id = list.id}).profile_count

print(string.format("list %s: %d profiles in %d pages (profile_count %d)", list.id, #emails, pages, counted))
return {list_id = list.id, count = #emails, pages = pages, profile_count = counted, emails = emails}
