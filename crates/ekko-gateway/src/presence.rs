//! Presence for connectionless protocols (OsmAnd over HTTP): a device is "connected" from its
//! first record after a silence until it has been silent for the presence timeout.
//!
//! [`Silence`] is the pure bookkeeping (no I/O, no clock: the caller passes `now`);
//! [`PresenceTracker`] records the events through [`Ekko::record_presence`] and runs the
//! background task that reports `disconnect` with reason `timeout`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ekko_core::notification::PresenceKind;
use ekko_core::{DomainError, Ekko, Imei};
use tokio::time::Instant;

/// Default silence after which a device is reported disconnected.
pub const DEFAULT_PRESENCE_TIMEOUT: Duration = Duration::from_secs(300);
/// The reason of a disconnect reported because the device went silent.
pub const TIMEOUT_REASON: &str = "timeout";

/// When each connected device was last heard from.
#[derive(Debug, Default)]
pub struct Silence {
    last_seen: HashMap<Imei, Instant>,
}

impl Silence {
    /// Notes a record from `imei`; `true` when it was not connected (a `connect` is due).
    pub fn heard(&mut self, imei: &Imei, now: Instant) -> bool {
        self.last_seen.insert(imei.clone(), now).is_none()
    }

    /// Forgets `imei` (its `connect` could not be recorded).
    pub fn forget(&mut self, imei: &Imei) {
        self.last_seen.remove(imei);
    }

    /// Removes and returns the devices silent for at least `timeout` (a `disconnect` is due).
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<Imei> {
        let mut gone = Vec::new();
        self.last_seen.retain(|imei, seen| {
            let silent = now.saturating_duration_since(*seen) >= timeout;
            if silent {
                gone.push(imei.clone());
            }
            !silent
        });
        gone
    }

    pub fn connected(&self) -> usize {
        self.last_seen.len()
    }
}

/// Reports `connect` / `disconnect` presence events for one device protocol.
pub struct PresenceTracker {
    ekko: Ekko,
    protocol: &'static str,
    timeout: Duration,
    silence: Mutex<Silence>,
}

impl PresenceTracker {
    pub fn new(ekko: Ekko, protocol: &'static str, timeout: Duration) -> Arc<Self> {
        Arc::new(PresenceTracker {
            ekko,
            protocol,
            timeout,
            silence: Mutex::new(Silence::default()),
        })
    }

    /// Called for every record of a device, before it is ingested: the first one after a
    /// silence is preceded by a `connect` presence event. Unregistered devices are ignored
    /// (their record is refused anyway).
    pub async fn heard(&self, imei: &Imei) {
        let connect = self
            .silence
            .lock()
            .expect("presence lock")
            .heard(imei, Instant::now());
        if !connect {
            return;
        }
        match self
            .ekko
            .record_presence(imei, PresenceKind::Connect, None, Some(self.protocol))
            .await
        {
            Ok(_) => {}
            Err(e) => {
                self.silence.lock().expect("presence lock").forget(imei);
                if !matches!(e, DomainError::NotFound(_)) {
                    tracing::warn!(%imei, error = %e, "could not record a connect");
                }
            }
        }
    }

    /// Reports `disconnect` (reason `timeout`) for every device silent for the timeout.
    pub async fn expire_silent(&self) {
        let gone = self
            .silence
            .lock()
            .expect("presence lock")
            .expire(Instant::now(), self.timeout);
        for imei in gone {
            if let Err(e) = self
                .ekko
                .record_presence(
                    &imei,
                    PresenceKind::Disconnect,
                    Some(TIMEOUT_REASON),
                    Some(self.protocol),
                )
                .await
            {
                tracing::warn!(%imei, error = %e, "could not record a disconnect");
            }
        }
    }

    /// The background task: checks for silent devices a few times per timeout until `stop`.
    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let every = (self.timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => self.expire_silent().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_record_after_silence_connects_and_silence_disconnects() {
        let imei = Imei::parse("359881234567899").unwrap();
        let t0 = Instant::now();
        let timeout = Duration::from_secs(300);
        let mut s = Silence::default();
        assert!(s.heard(&imei, t0));
        assert!(!s.heard(&imei, t0 + Duration::from_secs(10)));
        // Silence is measured from the last record, not the first.
        assert!(s.expire(t0 + Duration::from_secs(300), timeout).is_empty());
        assert_eq!(
            s.expire(t0 + Duration::from_secs(310), timeout),
            vec![imei.clone()]
        );
        assert_eq!(s.connected(), 0);
        assert!(s.heard(&imei, t0 + Duration::from_secs(400)));
    }
}
