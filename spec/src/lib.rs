//! Facts of Klaviyo's REST API that both sides need: the guest (the component, `src/`) sends by
//! them and the host (egress policy, emulator, docs) checks by them. One declaration each; the
//! emulator's tests compare them with the vendored OpenAPI slices.

#![no_std]
#![deny(missing_docs)]

/// The API revision every request pins (Klaviyo's required `revision` header). The vendored
/// OpenAPI slices (`host-harness/emulator/openapi/`) are of this revision.
pub const REVISION: &str = "2026-07-15";

/// The only host the component addresses, always over https on the default port. A host
/// routes it to an account's base URL; nothing else may be reached.
pub const ORIGIN_HOST: &str = "a.klaviyo.com";

/// Klaviyo's production base URL: [`ORIGIN_HOST`] over https.
pub const DEFAULT_BASE_URL: &str = "https://a.klaviyo.com";

/// The `page[size]` range of one collection endpoint, as its OpenAPI slice declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageSize {
    /// The endpoint's own default when `page[size]` is not sent.
    pub default: u32,
    /// The largest `page[size]` the endpoint accepts (the smallest is 1).
    pub max: u32,
}

/// `GET /api/profiles`.
pub const PROFILES_PAGE: PageSize = PageSize {
    default: 20,
    max: 100,
};
/// `GET /api/lists/{id}/profiles`.
pub const LIST_PROFILES_PAGE: PageSize = PageSize {
    default: 20,
    max: 100,
};
/// `GET /api/lists`.
pub const LISTS_PAGE: PageSize = PageSize {
    default: 10,
    max: 10,
};
/// `GET /api/flows`.
pub const FLOWS_PAGE: PageSize = PageSize {
    default: 50,
    max: 50,
};
/// `GET /api/events`.
pub const EVENTS_PAGE: PageSize = PageSize {
    default: 200,
    max: 1000,
};
/// `GET /api/campaigns`.
pub const CAMPAIGNS_PAGE: PageSize = PageSize {
    default: 100,
    max: 100,
};

/// Every collection endpoint's operation id (as in the OpenAPI slices) with its range.
pub const PAGE_SIZES: &[(&str, PageSize)] = &[
    ("get_profiles", PROFILES_PAGE),
    ("get_profiles_for_list", LIST_PROFILES_PAGE),
    ("get_lists", LISTS_PAGE),
    ("get_flows", FLOWS_PAGE),
    ("get_events", EVENTS_PAGE),
    ("get_campaigns", CAMPAIGNS_PAGE),
];
