//! One Klaviyo account's data: profiles, lists and memberships, metrics and events, and the
//! seeded (read-only) flows and campaigns. Every API key gets its own [`Account`].

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::filter::FieldVal;
use super::{ids, time};

/// The profile attributes that are plain nullable strings (spec: `ProfileCreateQuery`).
pub(crate) const STRING_ATTRS: [&str; 9] = [
    "email",
    "phone_number",
    "external_id",
    "first_name",
    "last_name",
    "organization",
    "locale",
    "title",
    "image",
];

/// The keys of `ProfileLocation`.
pub(crate) const LOCATION_KEYS: [&str; 10] = [
    "address1",
    "address2",
    "city",
    "country",
    "latitude",
    "longitude",
    "region",
    "zip",
    "timezone",
    "ip",
];

/// A recorded marketing consent for one channel.
#[derive(Clone, Debug)]
pub(crate) struct Consent {
    /// When consent was given (`consented_at`, or the subscribe time).
    pub consented_at: i64,
    /// When the record last changed.
    pub updated: i64,
    /// `custom_source` of the bulk subscribe job, if any.
    pub source: Option<String>,
}

/// A profile.
#[derive(Clone, Debug)]
pub(crate) struct Profile {
    pub id: String,
    /// Values of [`STRING_ATTRS`] that are set.
    pub strings: HashMap<&'static str, String>,
    /// Set keys of [`LOCATION_KEYS`] (string or number).
    pub location: Map<String, Value>,
    pub properties: Map<String, Value>,
    pub created: i64,
    pub updated: i64,
    pub last_event_date: Option<i64>,
    /// An `anonymous_id` given by create_event (an identifier that is not rendered).
    pub anonymous_id: Option<String>,
    pub email_consent: Option<Consent>,
    pub sms_consent: Option<Consent>,
}

impl Profile {
    /// A new, empty profile created now.
    pub fn new(now: i64) -> Profile {
        Profile {
            id: ids::ulid(),
            strings: HashMap::new(),
            location: Map::new(),
            properties: Map::new(),
            created: now,
            updated: now,
            last_event_date: None,
            anonymous_id: None,
            email_consent: None,
            sms_consent: None,
        }
    }

    /// A string attribute's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.strings.get(name).map(String::as_str)
    }

    /// Set or (with `None`) clear a string attribute; unknown names are ignored.
    pub fn set(&mut self, name: &str, value: Option<String>) {
        if let Some(key) = STRING_ATTRS.iter().find(|k| **k == name) {
            match value {
                Some(v) => self.strings.insert(key, v),
                None => self.strings.remove(key),
            };
        }
    }

    /// Filter/sort fields (get_profiles and get_profiles_for_list `x-klaviyo-filters`).
    pub fn field(&self, name: &str) -> FieldVal {
        match name {
            "id" => FieldVal::Str(self.id.clone()),
            "created" => FieldVal::Time(self.created),
            "updated" => FieldVal::Time(self.updated),
            n if STRING_ATTRS.contains(&n) => FieldVal::opt_str(self.get(n)),
            _ => FieldVal::Null,
        }
    }
}

/// A list.
#[derive(Clone, Debug)]
pub(crate) struct List {
    pub id: String,
    pub name: String,
    pub opt_in_process: String,
    pub created: i64,
    pub updated: i64,
    /// `(profile id, joined_group_at)` in joining order.
    pub members: Vec<(String, i64)>,
}

impl List {
    /// Filter/sort fields (get_lists `x-klaviyo-filters`).
    pub fn field(&self, name: &str) -> FieldVal {
        match name {
            "id" => FieldVal::Str(self.id.clone()),
            "name" => FieldVal::Str(self.name.clone()),
            "created" => FieldVal::Time(self.created),
            "updated" => FieldVal::Time(self.updated),
            _ => FieldVal::Null,
        }
    }
}

/// The integration a metric comes from (`integration` of MetricResponseObjectResource).
#[derive(Clone, Debug)]
pub(crate) struct Integration {
    pub id: &'static str,
    pub name: String,
    pub category: &'static str,
}

impl Integration {
    /// Metrics created through the Events API belong to the "API" integration (or to the
    /// `service` create_event named).
    pub fn api(service: Option<String>) -> Integration {
        Integration {
            id: "7FtS4J",
            name: service.unwrap_or_else(|| "API".into()),
            category: "API",
        }
    }

    /// Klaviyo's own metrics (email activity, list subscriptions).
    fn klaviyo() -> Integration {
        Integration {
            id: "0rG4eQ",
            name: "Klaviyo".into(),
            category: "Internal",
        }
    }
}

/// A metric (seeded, or created on first use by create_event).
#[derive(Clone, Debug)]
pub(crate) struct Metric {
    pub id: String,
    pub name: String,
    pub created: i64,
    pub updated: i64,
    pub integration: Integration,
}

impl Metric {
    /// Filter fields (get_metrics `x-klaviyo-filters`: `integration.name`,
    /// `integration.category`).
    pub fn field(&self, name: &str) -> FieldVal {
        match name {
            "id" => FieldVal::Str(self.id.clone()),
            "name" => FieldVal::Str(self.name.clone()),
            "integration.name" => FieldVal::Str(self.integration.name.clone()),
            "integration.category" => FieldVal::opt_str(Some(self.integration.category)),
            _ => FieldVal::Null,
        }
    }
}

/// An event.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub id: String,
    pub uuid: String,
    pub metric_id: String,
    pub profile_id: String,
    /// Unix seconds (`datetime` and `timestamp` both derive from it).
    pub time: i64,
    pub properties: Map<String, Value>,
    pub unique_id: Option<String>,
}

impl Event {
    /// Filter/sort fields (get_events `x-klaviyo-filters`).
    pub fn field(&self, name: &str) -> FieldVal {
        match name {
            "metric_id" | "metric" => FieldVal::Str(self.metric_id.clone()),
            "profile_id" | "profile" => FieldVal::Str(self.profile_id.clone()),
            "datetime" => FieldVal::Time(self.time),
            "timestamp" => FieldVal::Num(self.time as f64),
            _ => FieldVal::Null,
        }
    }
}

/// A seeded, read-only resource (flow or campaign) kept as its rendered attributes.
#[derive(Clone, Debug)]
pub(crate) struct Seeded {
    pub id: String,
    pub attributes: Map<String, Value>,
    /// For campaigns: `email`, `sms` or `mobile_push` (the `messages.channel` filter).
    pub channel: Option<&'static str>,
}

impl Seeded {
    /// Filter/sort fields of flows and campaigns.
    pub fn field(&self, name: &str) -> FieldVal {
        match name {
            "id" => FieldVal::Str(self.id.clone()),
            "messages.channel" => FieldVal::opt_str(self.channel),
            "created" | "updated" | "created_at" | "updated_at" | "scheduled_at" => {
                FieldVal::from_json_time(self.attributes.get(name))
            }
            _ => FieldVal::from_json(self.attributes.get(name)),
        }
    }
}

/// One account's state.
#[derive(Debug)]
pub(crate) struct Account {
    /// Profiles in creation (= ULID) order.
    pub profiles: Vec<Profile>,
    pub lists: Vec<List>,
    pub metrics: Vec<Metric>,
    /// Events in arrival order.
    pub events: Vec<Event>,
    pub flows: Vec<Seeded>,
    pub campaigns: Vec<Seeded>,
}

impl Account {
    /// A fresh account holding the deterministic seed of flows and campaigns.
    pub fn seeded() -> Account {
        Account {
            profiles: Vec::new(),
            lists: Vec::new(),
            metrics: seed_metrics(),
            events: Vec::new(),
            flows: seed_flows(),
            campaigns: seed_campaigns(),
        }
    }

    pub fn profile(&self, id: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.id == id)
    }

    pub fn profile_mut(&mut self, id: &str) -> Option<&mut Profile> {
        self.profiles.iter_mut().find(|p| p.id == id)
    }

    /// The profile (other than `except`) already holding one of these identifiers:
    /// email (case-insensitive), phone number or external id (notes §2, 409 duplicate).
    pub fn conflicting(&self, candidate: &Profile, except: Option<&str>) -> Option<&Profile> {
        let email = candidate.get("email").map(str::to_lowercase);
        self.profiles
            .iter()
            .filter(|p| Some(p.id.as_str()) != except)
            .find(|p| {
                let same_email = email.is_some() && p.get("email").map(str::to_lowercase) == email;
                let same = |k: &str| candidate.get(k).is_some() && p.get(k) == candidate.get(k);
                same_email || same("phone_number") || same("external_id")
            })
    }

    /// The profile with this email (case-insensitive).
    pub fn by_email(&self, email: &str) -> Option<&Profile> {
        let email = email.to_lowercase();
        self.profiles
            .iter()
            .find(|p| p.get("email").map(str::to_lowercase).as_deref() == Some(email.as_str()))
    }

    /// The profile with this string identifier (phone_number, external_id).
    pub fn by_attr(&self, attr: &str, value: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.get(attr) == Some(value))
    }

    pub fn list(&self, id: &str) -> Option<&List> {
        self.lists.iter().find(|l| l.id == id)
    }

    pub fn list_mut(&mut self, id: &str) -> Option<&mut List> {
        self.lists.iter_mut().find(|l| l.id == id)
    }

    /// Ids of the lists a profile belongs to.
    pub fn lists_of(&self, profile_id: &str) -> Vec<String> {
        self.lists
            .iter()
            .filter(|l| l.members.iter().any(|(p, _)| p == profile_id))
            .map(|l| l.id.clone())
            .collect()
    }

    pub fn metric(&self, id: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.id == id)
    }

    /// A new id (from `make`) that no resource in `taken` uses.
    pub fn fresh_id(taken: impl Fn(&str) -> bool, make: impl Fn() -> String) -> String {
        loop {
            let id = make();
            if !taken(&id) {
                return id;
            }
        }
    }
}

/// The fixed point in time seeds start from: 2025-01-06T09:00:00Z.
const SEED_EPOCH: i64 = 1_736_154_000;

/// [`SEED_EPOCH`] plus `days` and `hours`.
fn seed_time(days: i64, hours: i64) -> String {
    time::format_iso(SEED_EPOCH + days * 86_400 + hours * 3600)
}

/// Klaviyo's own metrics, which every account has (they have no events here).
fn seed_metrics() -> Vec<Metric> {
    let metrics = [
        ("Kx7Jq2", "Received Email"),
        ("Lm3Zp8", "Opened Email"),
        ("Nq5Wt4", "Clicked Email"),
        ("Pv9Hs6", "Subscribed to List"),
    ];
    let at = SEED_EPOCH;
    metrics
        .iter()
        .map(|(id, name)| Metric {
            id: id.to_string(),
            name: name.to_string(),
            created: at,
            updated: at,
            integration: Integration::klaviyo(),
        })
        .collect()
}

/// How many flows an account holds: more than one page of get_flows (at most 50), so that
/// following `links.next` shows.
pub(crate) const SEEDED_FLOWS: usize = 60;

/// Five named flows covering the statuses (draft/manual/live) and several trigger types, then
/// generated ones up to [`SEEDED_FLOWS`].
fn seed_flows() -> Vec<Seeded> {
    let named = [
        ("XVTP5Q", "Welcome Series", "live", false, "Added to List"),
        ("RwKdfH", "Abandoned Cart Reminder", "live", false, "Metric"),
        ("SbGL7g", "Browse Abandonment", "draft", false, "Metric"),
        ("Tc8XmR", "Birthday Discount", "manual", false, "Date Based"),
        (
            "UyZ2qN",
            "Back in Stock (legacy)",
            "draft",
            true,
            "Low Inventory",
        ),
    ];
    let kinds = [
        ("Post-Purchase Follow-up", "Metric"),
        ("Win-Back", "Added to List"),
        ("Price Drop Alert", "Price Drop"),
        ("Anniversary", "Date Based"),
    ];
    let generated: Vec<(String, String, &str, bool, &str)> = (named.len()..SEEDED_FLOWS)
        .map(|i| {
            let (name, trigger) = kinds[i % kinds.len()];
            let status = ["live", "draft", "manual"][i % 3];
            (
                format!("Fl{i:04}"),
                format!("{name} {}", i / kinds.len()),
                status,
                i % 7 == 0,
                trigger,
            )
        })
        .collect();
    let named = named.iter().map(|(id, name, status, archived, trigger)| {
        (
            id.to_string(),
            name.to_string(),
            *status,
            *archived,
            *trigger,
        )
    });
    named
        .chain(generated)
        .enumerate()
        .map(|(i, (id, name, status, archived, trigger))| {
            let i = i as i64;
            let attributes = json!({
                "name": name,
                "status": status,
                "archived": archived,
                "created": seed_time(i * 3, 0),
                "updated": seed_time(i * 3 + 10, 2),
                "trigger_type": trigger,
            });
            Seeded {
                id,
                attributes: attributes.as_object().cloned().unwrap_or_default(),
                channel: None,
            }
        })
        .collect()
}

/// Four email and three SMS campaigns with every required attribute of
/// `CampaignResponseObjectResource` and a variety of statuses and send strategies. The last
/// number is the campaign's slot in time: the channels alternate, so that a listing of both
/// channels by date interleaves them.
fn seed_campaigns() -> Vec<Seeded> {
    let campaigns = [
        (
            "01JH2Q7Z8N3W4X5Y6Z7A8B9C0D",
            "email",
            "January Newsletter",
            "Sent",
            0,
        ),
        (
            "01JH2Q7Z8N3W4X5Y6Z7A8B9C0E",
            "email",
            "Winter Sale Announcement",
            "Scheduled",
            2,
        ),
        (
            "01JH2Q7Z8N3W4X5Y6Z7A8B9C0F",
            "email",
            "Product Launch Teaser",
            "Draft",
            4,
        ),
        (
            "01JH2Q7Z8N3W4X5Y6Z7A8B9C0G",
            "email",
            "Customer Survey",
            "Cancelled",
            6,
        ),
        (
            "01JH2Q7Z8N3W4X5Y6Z7A8B9C0H",
            "sms",
            "Flash Sale SMS",
            "Sent",
            1,
        ),
        (
            "01JH2Q7Z8N3W4X5Y6Z7A8B9C0J",
            "sms",
            "Weekend Reminder SMS",
            "Scheduled",
            3,
        ),
        (
            "01JH2Q7Z8N3W4X5Y6Z7A8B9C0K",
            "sms",
            "VIP Early Access SMS",
            "Draft",
            5,
        ),
    ];
    campaigns
        .iter()
        .map(|(id, channel, name, status, i)| {
            let send_time = seed_time(i * 4 + 2, 15);
            let send_strategy = match i % 4 {
                0 => json!({"method": "static", "datetime": send_time,
                            "options": {"is_local": false}}),
                1 => json!({"method": "smart_send_time",
                            "date": time::format_date(1_736_154_000 + (i * 4 + 2) * 86_400)}),
                2 => json!({"method": "immediate"}),
                _ => json!({"method": "throttled", "datetime": send_time,
                            "throttle_percentage": 20}),
            };
            let tracking = if *channel == "email" {
                json!({"add_tracking_params": false, "custom_tracking_params": null,
                       "is_tracking_clicks": true, "is_tracking_opens": true})
            } else {
                json!({"add_tracking_params": false, "custom_tracking_params": null})
            };
            let sent = *status == "Sent";
            let scheduled = matches!(*status, "Sent" | "Scheduled");
            let attributes = json!({
                "name": name,
                "status": status,
                "archived": false,
                "audiences": {"included": ["Y6nRLr"], "excluded": []},
                "send_options": {"use_smart_sending": true},
                "tracking_options": tracking,
                "send_strategy": send_strategy,
                "created_at": seed_time(i * 4, 0),
                "scheduled_at": if scheduled { json!(seed_time(i * 4 + 1, 0)) } else { Value::Null },
                "updated_at": seed_time(i * 4 + 1, 3),
                "send_time": if sent { json!(send_time) } else { Value::Null },
            });
            Seeded {
                id: id.to_string(),
                attributes: attributes.as_object().cloned().unwrap_or_default(),
                channel: Some(channel),
            }
        })
        .collect()
}
