#!/usr/bin/env python3
"""Klaviyo's official Python SDK (`pip install klaviyo-api`) doing N sequential get_profile
calls against a given base URL (the kosmo emulator), for `cargo run --release -p kosmo --bin bench`.

    python3 benches/python_sdk.py BASE_URL API_KEY PROFILE_ID COUNT

Prints one JSON object: {"elapsed_s": ..., "count": N, "per_call_us": ..., "sdk_version": ...}.

How the SDK is pointed at the emulator: `KlaviyoAPI(api_key, test_host=BASE_URL)` sets the
generated `openapi_client.Configuration.host` (the wrapper's `__post_init__` does
`self.configuration.host = self.test_host` before building its `ApiClient`). The SDK pins its
own API revision in `api_client.default_headers['revision']`; we set it to the revision kosmo
and the emulator speak (2026-07-15) so both sides send the same request. Retries stay the
SDK's defaults (nothing is retried here: every answer is a 200).
"""

import json
import sys
import time

REVISION = "2026-07-15"


def main(argv):
    if len(argv) != 5:
        print("usage: python3 benches/python_sdk.py BASE_URL API_KEY PROFILE_ID COUNT", file=sys.stderr)
        return 2
    base_url, api_key, profile_id, count = argv[1], argv[2], argv[3], int(argv[4])

    try:
        from klaviyo_api import KlaviyoAPI
    except ImportError:
        print(json.dumps({"skipped": "pip install klaviyo-api"}))
        return 3
    try:
        from importlib.metadata import version

        sdk_version = version("klaviyo-api")
    except Exception:  # noqa: BLE001 - the version is informative only
        sdk_version = "unknown"

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
                "sdk_version": sdk_version,
                "python": sys.version.split()[0],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
