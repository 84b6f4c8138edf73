//! Admin commands for device identity: integrations (`ekko integration create`) and pending
//! devices (`ekko device pending`). Thin layers over the domain.

use std::path::Path;

use anyhow::Result;
use ekko_core::time::rfc3339;

use crate::server;

/// Creates an integration for `account` and prints its secret (shown once, never stored).
pub async fn integration_create(data_dir: &Path, account: &str) -> Result<()> {
    let (ekko, store) = server::open_domain(data_dir).await?;
    let result = ekko.create_integration(account).await;
    store.close().await;
    let (integration, secret) = result?;
    eprintln!(
        "created integration {} for {} (the secret below is shown once; Ekko keeps only its hash)",
        integration.id,
        account.trim().to_lowercase()
    );
    println!("{secret}");
    Ok(())
}

/// Prints the unknown devices that tried to send data, most recently seen first.
pub async fn device_pending(data_dir: &Path) -> Result<()> {
    let (ekko, store) = server::open_domain(data_dir).await?;
    let result = ekko.pending_devices().await;
    store.close().await;
    let pending = result?;
    if pending.is_empty() {
        eprintln!("no pending devices");
        return Ok(());
    }
    println!(
        "{:<15}  {:<12}  {:<24}  {:<24}  {:>8}",
        "IMEI", "PROTOCOL", "FIRST SEEN", "LAST SEEN", "ATTEMPTS"
    );
    for p in pending {
        println!(
            "{:<15}  {:<12}  {:<24}  {:<24}  {:>8}",
            p.imei.as_str(),
            p.protocol,
            rfc3339(&p.first_seen),
            rfc3339(&p.last_seen),
            p.attempts
        );
    }
    Ok(())
}
