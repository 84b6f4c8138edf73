//! Abuse resistance for password checks (the token endpoint's password grant and the sign-in
//! page): a fixed-window rate limit per IP address and per account, and a temporary lockout of
//! an account after repeated failures. In memory, bounded; a restart forgets it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::OAuthError;

/// Most keys tracked at once; beyond this, expired windows are dropped, then the map is
/// cleared (failing open beats growing without bound).
const MAX_KEYS: usize = 100_000;

#[derive(Clone, Debug)]
pub struct LimitConfig {
    /// Password attempts per IP address per window.
    pub per_ip: u32,
    /// Password attempts per account (username) per window.
    pub per_account: u32,
    pub window: Duration,
    /// Consecutive failures that lock an account...
    pub lockout_after: u32,
    /// ...for this long.
    pub lockout_for: Duration,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            per_ip: 600,
            per_account: 120,
            window: Duration::from_secs(60),
            lockout_after: 10,
            lockout_for: Duration::from_secs(300),
        }
    }
}

#[derive(Default)]
struct State {
    windows: HashMap<String, (Instant, u32)>,
    failures: HashMap<String, (u32, Option<Instant>)>,
}

pub struct Limits {
    config: LimitConfig,
    state: Mutex<State>,
}

fn account_key(username: &str) -> String {
    username.trim().to_lowercase()
}

impl Limits {
    pub fn new(config: LimitConfig) -> Self {
        Limits {
            config,
            state: Mutex::new(State::default()),
        }
    }

    fn hit(&self, st: &mut State, key: String, max: u32, now: Instant) -> Option<u64> {
        if st.windows.len() >= MAX_KEYS {
            let window = self.config.window;
            st.windows
                .retain(|_, (start, _)| now.duration_since(*start) < window);
            if st.windows.len() >= MAX_KEYS {
                st.windows.clear();
            }
        }
        let entry = st.windows.entry(key).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.config.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        (entry.1 > max).then(|| {
            self.config
                .window
                .saturating_sub(now.duration_since(entry.0))
                .as_secs()
                + 1
        })
    }

    /// Counts an attempt; refuses it with 429 and `Retry-After` when a limit is exceeded or the
    /// account is locked.
    pub fn check(&self, username: &str, ip: Option<IpAddr>) -> Result<(), OAuthError> {
        let now = Instant::now();
        let account = account_key(username);
        let mut st = self.state.lock().expect("limits lock");
        if let Some((_, Some(until))) = st.failures.get(&account)
            && *until > now
        {
            let secs = until.duration_since(now).as_secs() + 1;
            return Err(OAuthError::too_many_requests(
                secs,
                format!(
                    "this account is temporarily locked after repeated failed sign-ins; retry in {secs} s"
                ),
            ));
        }
        if let Some(ip) = ip
            && let Some(secs) = self.hit(&mut st, format!("ip:{ip}"), self.config.per_ip, now)
        {
            return Err(OAuthError::too_many_requests(
                secs,
                format!("too many sign-in attempts from your address; retry in {secs} s"),
            ));
        }
        if let Some(secs) = self.hit(
            &mut st,
            format!("acct:{account}"),
            self.config.per_account,
            now,
        ) {
            return Err(OAuthError::too_many_requests(
                secs,
                format!("too many sign-in attempts for this account; retry in {secs} s"),
            ));
        }
        Ok(())
    }

    /// Counts an account creation from `ip` (sign-ups share the per-IP budget's size).
    pub fn check_sign_up(&self, ip: Option<IpAddr>) -> Result<(), OAuthError> {
        let Some(ip) = ip else { return Ok(()) };
        let now = Instant::now();
        let mut st = self.state.lock().expect("limits lock");
        match self.hit(&mut st, format!("signup:{ip}"), self.config.per_ip, now) {
            Some(secs) => Err(OAuthError::too_many_requests(
                secs,
                format!("too many sign-ups from your address; retry in {secs} s"),
            )),
            None => Ok(()),
        }
    }

    pub fn failed(&self, username: &str, _ip: Option<IpAddr>) {
        let now = Instant::now();
        let mut st = self.state.lock().expect("limits lock");
        if st.failures.len() >= MAX_KEYS {
            st.failures.clear();
        }
        let e = st
            .failures
            .entry(account_key(username))
            .or_insert((0, None));
        if e.1.is_some_and(|until| until <= now) {
            *e = (0, None);
        }
        e.0 += 1;
        if e.0 >= self.config.lockout_after {
            e.1 = Some(now + self.config.lockout_for);
            tracing::warn!("an account is locked after repeated failed sign-ins");
        }
    }

    pub fn succeeded(&self, username: &str) {
        self.state
            .lock()
            .expect("limits lock")
            .failures
            .remove(&account_key(username));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_ip: u32, per_account: u32, lockout_after: u32) -> Limits {
        Limits::new(LimitConfig {
            per_ip,
            per_account,
            window: Duration::from_secs(60),
            lockout_after,
            lockout_for: Duration::from_secs(300),
        })
    }

    #[test]
    fn attempts_beyond_the_per_ip_limit_get_429_with_retry_after() {
        let l = limits(2, 100, 100);
        let ip = Some("10.0.0.1".parse().unwrap());
        assert!(l.check("a@x.y", ip).is_ok());
        assert!(l.check("b@x.y", ip).is_ok());
        let e = l.check("c@x.y", ip).unwrap_err();
        assert_eq!(e.status.as_u16(), 429);
        assert!(e.retry_after.unwrap() >= 1);
        assert!(l.check("c@x.y", Some("10.0.0.2".parse().unwrap())).is_ok());
    }

    #[test]
    fn attempts_beyond_the_per_account_limit_get_429_from_any_address() {
        let l = limits(100, 1, 100);
        assert!(l.check("A@x.y", Some("10.0.0.1".parse().unwrap())).is_ok());
        assert!(l.check("a@x.y", Some("10.0.0.2".parse().unwrap())).is_err());
    }

    #[test]
    fn repeated_failures_lock_the_account_and_success_resets_the_count() {
        let l = limits(100, 100, 3);
        l.failed("a@x.y", None);
        l.failed("a@x.y", None);
        l.succeeded("a@x.y");
        l.failed("a@x.y", None);
        l.failed("a@x.y", None);
        assert!(l.check("a@x.y", None).is_ok());
        l.failed("a@x.y", None);
        let e = l.check("a@x.y", None).unwrap_err();
        assert!(e.description.contains("locked"), "{}", e.description);
        assert!(l.check("other@x.y", None).is_ok());
    }
}
