//! Campaigns: `GET /api/campaigns`, which Klaviyo refuses without a `messages.channel` filter
//! (required since revision 2023-07-15), so it lists one channel per request.

use crate::http::{self, Request};
use crate::jsonapi::{self, Resource};
use crate::paging::{self, Stream};
use crate::{Campaign, CampaignPage, Channel, Error, ListCampaignsArgs, args};

/// Ids of an audience list (`audiences.included` / `audiences.excluded`).
fn channel_value(c: Channel) -> &'static str {
    match c {
        Channel::Email => "email",
        Channel::Sms => "sms",
        Channel::MobilePush => "mobile_push",
    }
}

fn to_campaign(r: Resource, channel: Channel) -> Campaign {
    let audiences = r.object("audiences");
    let ids = |key: &str| {
        audiences
            .as_ref()
            .map(|a| a.strings(key))
            .unwrap_or_default()
    };
    Campaign {
        name: r.text("name").unwrap_or_default(),
        channel,
        status: r.text("status").unwrap_or_default(),
        archived: r.flag("archived").unwrap_or(false),
        included_audiences: ids("included"),
        excluded_audiences: ids("excluded"),
        send_strategy: r.object("send_strategy").and_then(|s| s.text("method")),
        created_at: r.text("created_at").unwrap_or_default(),
        updated_at: r.text("updated_at").unwrap_or_default(),
        scheduled_at: r.text("scheduled_at"),
        send_time: r.text("send_time"),
        id: r.id,
    }
}

/// The request for one channel's campaigns, without page parameters.
fn base(channel: Channel) -> Request {
    Request::get("/api/campaigns".into()).param(
        "filter",
        format!("equals(messages.channel,'{}')", channel_value(channel)),
    )
}

/// When a campaign was created, for merging channels (`created_at` is a required attribute
/// of CampaignResponseObjectResource; an unreadable one sorts last).
fn created(r: &Resource) -> i64 {
    r.text("created_at")
        .and_then(|t| args::parse_rfc3339(&t))
        .unwrap_or(i64::MIN)
}

/// `list-campaigns`. With a channel: that channel's campaigns in Klaviyo's order. Without:
/// email and SMS campaigns merged newest first, which takes one stream per channel (the
/// filter allows one `messages.channel`), both sorted `-created_at` (a get_campaigns `sort`
/// value), and a cursor that resumes each stream where the merge stopped.
pub fn list(a: ListCampaignsArgs) -> Result<CampaignPage, Error> {
    let page = klaviyo_spec::CAMPAIGNS_PAGE;
    let limit = args::limit(a.limit, page)?;
    if let Some(channel) = a.channel {
        let (items, next_cursor) = paging::collect(&base(channel), limit, page.max, a.page_cursor)?;
        let items = items.into_iter().map(|r| to_campaign(r, channel)).collect();
        return Ok(CampaignPage { items, next_cursor });
    }
    let channels = [Channel::Email, Channel::Sms];
    let mut streams: Vec<Stream> = paging::decode(a.page_cursor, channels.len())?
        .into_iter()
        .map(Stream::new)
        .collect();
    let merged = paging::merge(
        &mut streams,
        limit,
        page.max as usize,
        &mut |i, cursor, size| {
            let stream = base(channels[i]).param("sort", "-created_at");
            jsonapi::page(http::send(&paging::page_request(&stream, cursor, size))?)
        },
        &|a, b| created(a) > created(b),
    )?;
    let items = merged
        .into_iter()
        .map(|(i, r)| to_campaign(r, channels[i]))
        .collect();
    let positions: Vec<_> = streams.iter().map(Stream::position).collect();
    Ok(CampaignPage {
        items,
        next_cursor: paging::encode(&positions),
    })
}
