-- Onboard one customer: create a profile, create a list and subscribe the profile to it,
-- record a first order, then read the profile back and return a summary.
--
--   kosmo integrations:lua examples/onboarding.lua --force --json
--   kosmo integrations:lua examples/onboarding.lua --sandbox --force --json   (no real Klaviyo)

local klaviyo = app.integrations.klaviyo

-- A unique address, so the example can run again without a duplicate_profile error.
local email = string.format("ada.%d.%d@example.com", math.random(1e9), math.random(1e6))

local profile = klaviyo.create_profile({
  email = email,
  first_name = "Ada",
  last_name = "Lovelace",
  properties = {plan = "pro", source = "onboarding example"},
})
print("created profile " .. profile.id .. " for " .. profile.email)

local list = klaviyo.create_list({name = "Onboarding " .. profile.id})
print("created list " .. list.id)

local subscription = klaviyo.subscribe_profile({list_id = list.id, email = profile.email})
print("subscription accepted: " .. tostring(subscription.accepted))

local event = klaviyo.create_event({
  profile_id = profile.id,
  event_name = "Placed Order",
  value = 42.5,
  properties = {order_id = "A-1001", items = {"notebook", "pen"}},
})
print("event accepted: " .. event.event_name)

local again = klaviyo.get_profile({profile_id = profile.id})

return {
  profile_id = again.id,
  email = again.email,
  name = again.first_name .. " " .. again.last_name,
  plan = again.properties.plan,
  list_id = list.id,
  subscribed = subscription.accepted,
  order_value = 42.5,
}
