#!/usr/bin/env python3
"""Klaviyo's official Python SDK (`pip install klaviyo-api`) against a given base URL (the kosmo
emulator), for the kosmo bench (`cargo run --release -p kosmo-bench --bin bench`). Two modes:

    python3 benches/python_sdk.py BASE_URL API_KEY PROFILE_ID COUNT
    python3 benches/python_sdk.py workflow BASE_URL API_KEY EMAIL

The first does COUNT sequential get_profile calls after one untimed warm-up call and prints
{"elapsed_s": ..., "count": N, "per_call_us": ..., "sdk_version": ..., "python": ...}.

`workflow` is the bench's figure 4: as one whole process (the bench times the process from
spawn to exit, so the interpreter's start-up and the SDK's imports count, as they do for anyone
running a script), it makes the same 15 HTTP requests as kosmo's workflow script
(`workflow_lua` in host-harness/bench/src/main.rs), in the same order:

     1  POST  /api/profiles                               create_profile (EMAIL, first_name)
     2  GET   /api/profiles/{id}                          get_profile
     3  PATCH /api/profiles/{id}                          update_profile (last_name)
     4  POST  /api/lists                                  create_list
     5  GET   /api/lists/{id}?additional-fields[list]=profile_count   get_list
     6  POST  /api/profile-subscription-bulk-create-jobs  bulk_subscribe_profiles (EMAIL to the list)
     7  GET   /api/profiles?page[size]=20                 get_profiles
     8  POST  /api/events                                 create_event ("Placed Order", 42.5)
     9  GET   /api/events?include=metric&fields[metric]=name&page[size]=20   get_events
    10  GET   /api/metrics                                get_metrics
    11  GET   /api/lists?page[size]=10                    get_lists
    12  GET   /api/flows?page[size]=20                    get_flows
    13  GET   /api/flows/{first flow's id}                get_flow
    14  GET   /api/campaigns?filter=equals(messages.channel,'email')&sort=-created_at&page[size]=20
    15  GET   /api/campaigns?filter=equals(messages.channel,'sms')&sort=-created_at&page[size]=20

and prints {"requests": 15, "import_s": ..., "api_objects_s": ..., "requests_s": ..., ...}: the
in-process time of `from klaviyo_api import KlaviyoAPI` and the client's construction, of
taking the six API objects (`klaviyo.Profiles` ... `klaviyo.Campaigns`, which import the
generated API modules and their models), and of the 15 calls. The bench counts the requests the
emulator received for API_KEY itself.

Responses are the SDK's default, pydantic models, except get_campaigns: the SDK's campaign
model (revision 2026-10-15) requires a `definition` object that revision 2026-07-15 (kosmo's and
the emulator's) does not send, so those two calls ask for plain dicts
(`options={USE_DICTIONARY_FOR_RESPONSE_DATA: True}`, an SDK option) rather than fail.

How the SDK is pointed at the emulator: `KlaviyoAPI(api_key, test_host=BASE_URL)` sets the
generated `openapi_client.Configuration.host` (the wrapper's `__post_init__` does
`self.configuration.host = self.test_host` before building its `ApiClient`). The SDK pins its
own API revision in `api_client.default_headers['revision']`; we set it to the revision kosmo
and the emulator speak (2026-07-15) so both sides send the same request. Retries stay the
SDK's defaults (nothing is retried here: every answer is a 2xx).
"""

import time

STARTED = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402

REVISION = "2026-07-15"


def sdk_version():
    try:
        from importlib.metadata import version

        return version("klaviyo-api")
    except Exception:  # noqa: BLE001 - the version is informative only
        return "unknown"


def get_profile_loop(argv):
    base_url, api_key, profile_id, count = argv[1], argv[2], argv[3], int(argv[4])
    try:
        from klaviyo_api import KlaviyoAPI
    except ImportError:
        print(json.dumps({"skipped": "pip install klaviyo-api"}))
        return 3

    klaviyo = KlaviyoAPI(api_key, max_delay=1, max_retries=3, test_host=base_url.rstrip("/"))
    klaviyo.api_client.default_headers["revision"] = REVISION
    # `klaviyo.Profiles` builds a new ProfilesApi (and re-wraps every method) on each access:
    # take it once, as an application would.
    profiles = klaviyo.Profiles

    # One warm-up call (imports the models, opens the keep-alive connection); not timed.
    first = profiles.get_profile(profile_id)
    got = first.data.id if hasattr(first, "data") else first["data"]["id"]
    if got != profile_id:
        print(json.dumps({"error": f"unexpected profile id {got!r}"}))
        return 1

    started = time.perf_counter()
    for _ in range(count):
        profiles.get_profile(profile_id)
    elapsed = time.perf_counter() - started

    print(
        json.dumps(
            {
                "elapsed_s": elapsed,
                "count": count,
                "per_call_us": elapsed / count * 1e6 if count else 0.0,
                "sdk_version": sdk_version(),
                "python": sys.version.split()[0],
            }
        )
    )
    return 0


def workflow(argv):
    base_url, api_key, email = argv[2], argv[3], argv[4]
    try:
        from klaviyo_api import KlaviyoAPI
        from openapi_client.api_arg_options import USE_DICTIONARY_FOR_RESPONSE_DATA
    except ImportError:
        print(json.dumps({"skipped": "pip install klaviyo-api"}))
        return 3
    klaviyo = KlaviyoAPI(api_key, max_delay=1, max_retries=3, test_host=base_url.rstrip("/"))
    klaviyo.api_client.default_headers["revision"] = REVISION
    imported = time.perf_counter()

    # Each property access builds a new API object and re-wraps its methods: take each once.
    profiles, lists, events = klaviyo.Profiles, klaviyo.Lists, klaviyo.Events
    metrics, flows, campaigns = klaviyo.Metrics, klaviyo.Flows, klaviyo.Campaigns
    objects = time.perf_counter()

    profile = profiles.create_profile(
        {"data": {"type": "profile", "attributes": {"email": email, "first_name": "Ada"}}}
    )
    profile_id = profile.data.id
    profiles.get_profile(profile_id)
    profiles.update_profile(
        profile_id,
        {"data": {"type": "profile", "id": profile_id, "attributes": {"last_name": "Lovelace"}}},
    )
    created = lists.create_list({"data": {"type": "list", "attributes": {"name": f"Workflow {email}"}}})
    list_id = created.data.id
    lists.get_list(list_id, additional_fields_list=["profile_count"])
    profiles.bulk_subscribe_profiles(
        {
            "data": {
                "type": "profile-subscription-bulk-create-job",
                "attributes": {
                    "profiles": {
                        "data": [
                            {
                                "type": "profile",
                                "attributes": {
                                    "email": email,
                                    "subscriptions": {"email": {"marketing": {"consent": "SUBSCRIBED"}}},
                                },
                            }
                        ]
                    },
                    "historical_import": False,
                },
                "relationships": {"list": {"data": {"type": "list", "id": list_id}}},
            }
        }
    )
    profiles.get_profiles(page_size=20)
    events.create_event(
        {
            "data": {
                "type": "event",
                "attributes": {
                    "properties": {},
                    "value": 42.5,
                    "metric": {"data": {"type": "metric", "attributes": {"name": "Placed Order"}}},
                    "profile": {"data": {"type": "profile", "id": profile_id, "attributes": {}}},
                },
            }
        }
    )
    events.get_events(include=["metric"], fields_metric=["name"], page_size=20)
    metrics.get_metrics()
    lists.get_lists(page_size=10)
    page = flows.get_flows(page_size=20)
    flows.get_flow(page.data[0].id)
    as_dict = {USE_DICTIONARY_FOR_RESPONSE_DATA: True}
    for channel in ("email", "sms"):
        campaigns.get_campaigns(
            filter=f"equals(messages.channel,'{channel}')",
            sort="-created_at",
            page_size=20,
            options=as_dict,
        )
    done = time.perf_counter()

    print(
        json.dumps(
            {
                "requests": 15,
                "import_s": imported - STARTED,
                "api_objects_s": objects - imported,
                "requests_s": done - objects,
                "sdk_version": sdk_version(),
                "python": sys.version.split()[0],
            }
        )
    )
    return 0


def main(argv):
    if len(argv) == 5 and argv[1] == "workflow":
        return workflow(argv)
    if len(argv) == 5:
        return get_profile_loop(argv)
    print(
        "usage: python3 benches/python_sdk.py BASE_URL API_KEY PROFILE_ID COUNT\n"
        "       python3 benches/python_sdk.py workflow BASE_URL API_KEY EMAIL",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
