//! The Klaviyo plugin: a WebAssembly component (wasm32-wasip2) exporting the functions of
//! `wit/klaviyo.wit` over `wasi:http` (the `wasip2` bindings) and serde_json for JSON:API.
//!
//! Organisation:
//! - [`error`]: building the WIT `error` record;
//! - [`http`]: requests, the pinned `revision`, retries with backoff, error mapping, cursors;
//! - [`jsonapi`]: the response and error envelopes every resource shares;
//! - [`args`]: argument checks, run before any request;
//! - [`paging`]: `limit` items across Klaviyo's pages, and the cursors that resume them;
//! - [`target`]: where requests go and with which credentials (egress injection by the host,
//!   or `KLAVIYO_API_KEY` / `KLAVIYO_BASE_URL` from the environment);
//! - one module per Klaviyo resource: [`profiles`], [`lists`], [`subscriptions`], [`events`],
//!   [`metrics`], [`flows`], [`campaigns`].
//!
//! In kosmo the component never sees an API key: the host adds `Authorization` at egress. In
//! hosts that configure components through the environment, it reads the key from there.

#![deny(missing_docs)]

/// Bindings generated from `wit/klaviyo.wit`.
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({ world: "plugin", path: "wit" });
}

pub mod args;
pub mod campaigns;
pub mod error;
pub mod events;
pub mod flows;
pub mod http;
pub mod jsonapi;
pub mod lists;
pub mod metrics;
pub mod paging;
pub mod profiles;
pub mod subscriptions;
pub mod target;

pub use bindings::exports::kosmo::klaviyo::klaviyo::*;

/// The component's export of the `klaviyo` interface.
pub struct Plugin;

impl Guest for Plugin {
    fn create_profile(args: CreateProfileArgs) -> Result<Profile, Error> {
        profiles::create(args)
    }
    fn get_profile(args: GetProfileArgs) -> Result<Profile, Error> {
        profiles::get(args)
    }
    fn update_profile(args: UpdateProfileArgs) -> Result<Profile, Error> {
        profiles::update(args)
    }
    fn list_profiles(args: ListProfilesArgs) -> Result<ProfilePage, Error> {
        profiles::list(args)
    }
    fn subscribe_profile(args: SubscribeProfileArgs) -> Result<SubscriptionAccepted, Error> {
        subscriptions::subscribe(args)
    }
    fn create_event(args: CreateEventArgs) -> Result<EventAccepted, Error> {
        events::create(args)
    }
    fn get_event(args: GetEventArgs) -> Result<Event, Error> {
        events::get(args)
    }
    fn list_events(args: ListEventsArgs) -> Result<EventPage, Error> {
        events::list(args)
    }
    fn list_lists(args: ListListsArgs) -> Result<MailingListPage, Error> {
        lists::list(args)
    }
    fn create_list(args: CreateListArgs) -> Result<MailingList, Error> {
        lists::create(args)
    }
    fn get_list(args: GetListArgs) -> Result<MailingList, Error> {
        lists::get(args)
    }
    fn list_list_profiles(args: ListListProfilesArgs) -> Result<ProfilePage, Error> {
        lists::profiles(args)
    }
    fn list_flows(args: ListFlowsArgs) -> Result<FlowPage, Error> {
        flows::list(args)
    }
    fn get_flow(args: GetFlowArgs) -> Result<Flow, Error> {
        flows::get(args)
    }
    fn list_campaigns(args: ListCampaignsArgs) -> Result<CampaignPage, Error> {
        campaigns::list(args)
    }
    fn list_metrics(args: ListMetricsArgs) -> Result<MetricPage, Error> {
        metrics::list(args)
    }
}

// Exported only when building the component: native builds (unit tests) would otherwise try
// to export symbols named after WIT interfaces, which native linkers refuse.
#[cfg(target_arch = "wasm32")]
bindings::export!(Plugin with_types_in bindings);
