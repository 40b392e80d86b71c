//! bulk_subscribe_profiles: find-or-create each profile, record marketing consent, add it to
//! the list. The whole job is validated before anything changes; 202 with no body.

use serde_json::{Map, Value};

use super::profiles::check_identifiers;
use super::{Ctx, Reply, body};
use crate::errors::ApiError;
use crate::state::{Account, Consent, Profile};
use crate::time;

/// The spec's description: "Maximum number of profiles can be submitted for subscription: 1000".
const MAX_PROFILES: usize = 1000;

/// One validated profile of the job.
struct Item {
    id: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    /// `consented_at` (or now) per channel that asked for marketing consent.
    email_consent: Option<i64>,
    sms_consent: Option<i64>,
}

/// Read `subscriptions.<channel>.marketing`: consent must be SUBSCRIBED; `consented_at`
/// only with `historical_import: true`, where it is required and must be in the past
/// (spec: SubscriptionParameters and the operation description; notes §2).
fn marketing(
    subs: &Map<String, Value>,
    channel: &str,
    pointer: &str,
    historical: bool,
    now: i64,
) -> Result<Option<i64>, ApiError> {
    let Some(ch) = body::object(subs, channel, pointer)? else {
        return Ok(None);
    };
    let ptr = format!("{pointer}/{channel}");
    let Some(m) = body::object(ch, "marketing", &ptr)? else {
        return Ok(None);
    };
    let ptr = format!("{ptr}/marketing");
    if m.get("consent").and_then(Value::as_str) != Some("SUBSCRIBED") {
        return Err(ApiError::invalid_pointer(
            &format!("{ptr}/consent"),
            "\"consent\" must be \"SUBSCRIBED\".",
        ));
    }
    let consented_at = body::opt_str(m, "consented_at", &ptr)?;
    let at_ptr = format!("{ptr}/consented_at");
    match (consented_at, historical) {
        (Some(_), false) => Err(ApiError::invalid_pointer(
            &at_ptr,
            "`consented_at` can only be provided when `historical_import` is true.",
        )),
        (None, true) => Err(ApiError::invalid_pointer(
            &at_ptr,
            "`consented_at` is required when `historical_import` is true.",
        )),
        (None, false) => Ok(Some(now)),
        (Some(text), true) => match time::parse_iso(&text) {
            Some(t) if t <= now => Ok(Some(t)),
            Some(_) => Err(ApiError::invalid_pointer(
                &at_ptr,
                "`consented_at` must be in the past.",
            )),
            None => Err(ApiError::invalid_pointer(
                &at_ptr,
                format!("`consented_at` is not an ISO 8601 datetime: {text}"),
            )),
        },
    }
}

fn read_item(item: &Value, pointer: &str, historical: bool, now: i64) -> Result<Item, ApiError> {
    let obj = item
        .as_object()
        .ok_or_else(|| ApiError::invalid_pointer(pointer, "Each profile must be an object."))?;
    if obj.get("type").and_then(Value::as_str) != Some("profile") {
        return Err(ApiError::invalid_pointer(
            &format!("{pointer}/type"),
            "\"type\" must be \"profile\".",
        ));
    }
    let attrs = body::required_object(obj, "attributes", pointer)?;
    let aptr = format!("{pointer}/attributes");
    let email = body::opt_str(attrs, "email", &aptr)?;
    let phone = body::opt_str(attrs, "phone_number", &aptr)?;
    if email.is_none() && phone.is_none() {
        return Err(ApiError::invalid_pointer(
            &aptr,
            "Either an email or a phone number is required.",
        ));
    }
    let mut probe = Profile::new(now);
    probe.set("email", email.clone());
    probe.set("phone_number", phone.clone());
    check_identifiers(&probe, &aptr)?;
    let subs = body::required_object(attrs, "subscriptions", &aptr)?;
    let sptr = format!("{aptr}/subscriptions");
    let email_consent = marketing(subs, "email", &sptr, historical, now)?;
    let sms_consent = marketing(subs, "sms", &sptr, historical, now)?;
    if email_consent.is_some() && email.is_none() {
        return Err(ApiError::invalid_pointer(
            &format!("{aptr}/email"),
            "An email is required to subscribe to email marketing.",
        ));
    }
    if sms_consent.is_some() && phone.is_none() {
        return Err(ApiError::invalid_pointer(
            &format!("{aptr}/phone_number"),
            "A phone number is required to subscribe to SMS marketing.",
        ));
    }
    Ok(Item {
        id: body::opt_str(obj, "id", pointer)?,
        email,
        phone,
        email_consent,
        sms_consent,
    })
}

/// POST /api/profile-subscription-bulk-create-jobs → 202, empty body.
pub(super) fn bulk_subscribe(ctx: &Ctx<'_>, acct: &mut Account) -> Result<Reply, ApiError> {
    let data = body::data(ctx.body, "profile-subscription-bulk-create-job")?;
    let attrs = body::required_object(data, "attributes", "/data")?;
    let historical = match attrs.get("historical_import") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid_pointer(
                "/data/attributes/historical_import",
                "\"historical_import\" must be a boolean.",
            ));
        }
    };
    let source = body::opt_str(attrs, "custom_source", "/data/attributes")?;
    let profiles = body::required_object(attrs, "profiles", "/data/attributes")?;
    let items = profiles
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ApiError::invalid_pointer(
                "/data/attributes/profiles/data",
                "\"data\" must be a list of profiles.",
            )
        })?;
    if items.is_empty() || items.len() > MAX_PROFILES {
        return Err(ApiError::invalid_pointer(
            "/data/attributes/profiles/data",
            format!("Between 1 and {MAX_PROFILES} profiles can be subscribed per job."),
        ));
    }
    let list_id = data
        .get("relationships")
        .and_then(|r| r.get("list"))
        .and_then(|l| l.get("data"))
        .and_then(|d| d.get("id"))
        .and_then(Value::as_str);
    let double_opt_in = match list_id {
        Some(id) => match acct.list(id) {
            Some(l) => l.opt_in_process == "double_opt_in",
            None => {
                return Err(ApiError::not_found(format!(
                    "A list with id {id} does not exist."
                )));
            }
        },
        None => false,
    };
    let plan = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let ptr = format!("/data/attributes/profiles/data/{i}");
            read_item(item, &ptr, historical, ctx.now)
        })
        .collect::<Result<Vec<Item>, ApiError>>()?;

    for item in plan {
        let found = item
            .id
            .as_deref()
            .and_then(|id| acct.profile(id))
            .or_else(|| item.email.as_deref().and_then(|e| acct.by_email(e)))
            .or_else(|| {
                item.phone
                    .as_deref()
                    .and_then(|ph| acct.by_attr("phone_number", ph))
            })
            .map(|p| p.id.clone());
        let profile_id = match found {
            Some(id) => id,
            None => {
                // "If a profile cannot be found matching the given identifier(s), a new
                // profile will be created and then subscribed." (requestBody description)
                let mut p = Profile::new(ctx.now);
                p.set("email", item.email.clone());
                if let Some(phone) = &item.phone
                    && acct.by_attr("phone_number", phone).is_none()
                {
                    p.set("phone_number", Some(phone.clone()));
                }
                let id = p.id.clone();
                acct.profiles.push(p);
                id
            }
        };
        // A double opt-in list only subscribes once the profile confirms by email, which
        // never happens here; historical imports bypass double opt-in (spec description).
        if double_opt_in && !historical {
            continue;
        }
        let phone_free = item
            .phone
            .as_deref()
            .is_some_and(|ph| acct.by_attr("phone_number", ph).is_none());
        if let Some(p) = acct.profile_mut(&profile_id) {
            let consent = |at: i64| Consent {
                consented_at: at,
                updated: ctx.now,
                source: source.clone(),
            };
            if let Some(at) = item.email_consent {
                p.email_consent = Some(consent(at));
            }
            if let Some(at) = item.sms_consent {
                p.sms_consent = Some(consent(at));
            }
            if p.get("phone_number").is_none() && phone_free {
                p.set("phone_number", item.phone.clone());
            }
            p.updated = ctx.now;
        }
        if let Some(l) = list_id.and_then(|id| acct.list_mut(id))
            && !l.members.iter().any(|(pid, _)| *pid == profile_id)
        {
            l.members.push((profile_id.clone(), ctx.now));
        }
    }
    Ok(Reply {
        status: 202,
        body: None,
    })
}
