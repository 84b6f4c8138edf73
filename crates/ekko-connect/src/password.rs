//! Password hashing: argon2id with OWASP's parameters (19 MiB, t=2, p=1), run on the blocking
//! pool so that a burst of sign-ins cannot stall the async runtime.
//!
//! At most one hash per CPU runs at a time; the rest wait their turn. argon2 is CPU- and
//! memory-bound: running 20 at once on 2 cores makes every one of them 10 times slower (each
//! answer waits for all the others), thrashes the caches with 20 × 19 MiB, and lets a burst of
//! sign-ins take memory without bound. Queued in order, the same burst finishes sooner on
//! average and the first callers are answered first.

use std::sync::LazyLock;

use tokio::sync::Semaphore;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 1024;

fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::DEFAULT)
}

/// A hash of a random password: verifying against it costs what a real check costs, so that an
/// unknown email takes as long to refuse as a wrong password.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    hasher()
        .hash_password(b"ekko-dummy-password-for-timing")
        .expect("argon2 hashes a fixed password")
        .to_string()
});

/// Checks the password policy; the message never contains the password.
pub fn check_policy(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "password must be at most {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    Ok(())
}

/// One permit per CPU: how many argon2 computations may run at once.
static SLOTS: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));

pub async fn hash(password: String) -> Result<String, String> {
    let _slot = SLOTS
        .acquire()
        .await
        .map_err(|e| format!("hashing queue closed: {e}"))?;
    tokio::task::spawn_blocking(move || {
        hasher()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| format!("hashing task failed: {e}"))?
    .map_err(|e| format!("hashing failed: {e}"))
}

/// Verifies `password` against `phc`; with `None` it burns the same time and returns false.
pub async fn verify(password: String, phc: Option<String>) -> bool {
    let Ok(_slot) = SLOTS.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        if password.len() > MAX_PASSWORD_BYTES {
            return false;
        }
        let target = phc.as_deref().unwrap_or(DUMMY_HASH.as_str());
        let ok = hasher()
            .verify_password(password.as_bytes(), target)
            .is_ok();
        ok && phc.is_some()
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let h = hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse".into(), Some(h.clone())).await);
        assert!(!verify("wrong horse".into(), Some(h)).await);
        assert!(!verify("anything".into(), None).await);
    }

    #[test]
    fn policy_messages_do_not_echo_the_password() {
        let e = check_policy("short").unwrap_err();
        assert!(!e.contains("short"), "{e}");
    }
}
