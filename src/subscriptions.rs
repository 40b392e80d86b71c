//! Subscriptions: `POST /api/profile-subscription-bulk-create-jobs`.

use serde_json::{Map, Value, json};

use crate::http::{self, Request, Verb};
use crate::{Error, SubscribeProfileArgs, SubscriptionAccepted, args};

/// `subscribe-profile`: one profile, email marketing (and SMS marketing when a phone number is
/// given), consent `SUBSCRIBED` (the only value the spec allows).
pub fn subscribe(a: SubscribeProfileArgs) -> Result<SubscriptionAccepted, Error> {
    let list_id = args::id("list_id", &a.list_id)?;
    let email = args::email("email", &a.email)?;
    let phone = a
        .phone_number
        .as_deref()
        .map(|p| args::phone("phone_number", p))
        .transpose()?;
    let consented_at = match a.consented_at.as_deref() {
        Some(t) => {
            let (text, unix) = args::datetime("consented_at", t)?;
            // The spec: with historical_import, consented_at is required and must be in the past.
            if unix > args::now_unix() {
                return Err(args::invalid(
                    "consented_at",
                    "consented_at must be in the past",
                ));
            }
            Some(text)
        }
        None => None,
    };

    let mut email_marketing = Map::new();
    email_marketing.insert("consent".into(), "SUBSCRIBED".into());
    if let Some(t) = &consented_at {
        email_marketing.insert("consented_at".into(), t.clone().into());
    }
    let mut subscriptions = json!({"email": {"marketing": email_marketing}});
    let mut attributes = Map::new();
    attributes.insert("email".into(), email.clone().into());
    if let Some(p) = &phone {
        attributes.insert("phone_number".into(), p.clone().into());
        let mut sms = Map::new();
        sms.insert("consent".into(), "SUBSCRIBED".into());
        if let Some(t) = &consented_at {
            sms.insert("consented_at".into(), t.clone().into());
        }
        subscriptions["sms"] = json!({"marketing": sms});
    }
    attributes.insert("subscriptions".into(), subscriptions);

    // "If the historical_import flag is not included, providing any value for [consented_at]
    // will raise an error" (spec), so the flag follows consented_at.
    let body = json!({"data": {
        "type": "profile-subscription-bulk-create-job",
        "attributes": {
            "profiles": {"data": [{"type": "profile", "attributes": Value::Object(attributes)}]},
            "historical_import": consented_at.is_some(),
        },
        "relationships": {"list": {"data": {"type": "list", "id": list_id}}},
    }});
    let path = "/api/profile-subscription-bulk-create-jobs".to_string();
    http::send(&Request::with_body(Verb::Post, path, body))?;
    Ok(SubscriptionAccepted {
        accepted: true,
        list_id,
        email,
        phone_number: phone,
    })
}
