//! Embedding the runtime: one compiled component serving two tenants, each call in its own
//! sandbox, against the emulator (point `base_url` at `https://a.klaviyo.com` for real).
//! README's "Embedding" section shows this file; `tests/embedding.rs` runs it.

use kosmo_emulator::Emulator;
use kosmo_runtime::{Account, ApiKey, ErrorCode, Runtime, RuntimeConfig};
use serde_json::json;

#[tokio::main]
pub async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let klaviyo = Emulator::start().await?; // a local Klaviyo; use Klaviyo's URL in production
    let runtime = Runtime::new(RuntimeConfig::default())?; // compile once, share, clone freely

    let shop = Account::new("shop-1", ApiKey::new("pk_shop_1"), &klaviyo.base_url())?;
    let other = Account::new("shop-2", ApiKey::new("pk_shop_2"), &klaviyo.base_url())?;

    let args = json!({"email": "ada@example.com", "first_name": "Ada"});
    let created = runtime.call(&shop, "create_profile", &args).await?;
    let id = created["id"].as_str().ok_or("no id")?;
    let profile = runtime
        .call(&shop, "get_profile", &json!({"profile_id": id}))
        .await?;
    println!("{} {}", profile["email"], profile["first_name"]);

    // Another tenant cannot see it: its requests carry its own key.
    let err = runtime
        .call(&other, "get_profile", &json!({"profile_id": id}))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    println!("{}: {}", err.code, err.message);
    Ok(())
}
