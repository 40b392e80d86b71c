//! Campaigns: `GET /api/campaigns`, which Klaviyo refuses without a `messages.channel` filter.

use serde_json::Value;

use crate::http::{self, Request};
use crate::jsonapi;
use crate::{Campaign, CampaignPage, Channel, Error, ListCampaignsArgs, args};

/// Ids of an audience list (`audiences.included` / `audiences.excluded`).
fn ids(audiences: &Value, key: &str) -> Vec<String> {
    audiences
        .get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The filter value Klaviyo expects for a channel.
fn channel_value(c: Channel) -> &'static str {
    match c {
        Channel::Email => "email",
        Channel::Sms => "sms",
        Channel::MobilePush => "mobile_push",
    }
}

/// `list-campaigns`.
pub fn list(a: ListCampaignsArgs) -> Result<CampaignPage, Error> {
    let channel = a.channel.unwrap_or(Channel::Email);
    let size = args::limit(a.limit, klaviyo_spec::CAMPAIGNS_PAGE)?;
    let req = Request::get("/api/campaigns".into())
        // Required since revision 2023-07-15: without it Klaviyo answers 400.
        .param(
            "filter",
            format!("equals(messages.channel,'{}')", channel_value(channel)),
        )
        .param("page[size]", size.to_string())
        .param_opt("page[cursor]", args::cursor(a.page_cursor)?);
    let (items, next_cursor) = jsonapi::page(http::send(&req)?)?;
    let items = items
        .into_iter()
        .map(|mut r| {
            let audiences = r.take("audiences");
            Campaign {
                name: r.text("name").unwrap_or_default(),
                channel,
                status: r.text("status").unwrap_or_default(),
                archived: r.flag("archived").unwrap_or(false),
                included_audiences: ids(&audiences, "included"),
                excluded_audiences: ids(&audiences, "excluded"),
                send_strategy: jsonapi::text_of(&r.take("send_strategy"), "method"),
                created_at: r.text("created_at").unwrap_or_default(),
                updated_at: r.text("updated_at").unwrap_or_default(),
                scheduled_at: r.text("scheduled_at"),
                send_time: r.text("send_time"),
                id: r.id,
            }
        })
        .collect();
    Ok(CampaignPage { items, next_cursor })
}
