//! Ingestion's short-lived memory of devices.
//!
//! Every packet, report or webhook event is checked against its device (registered? active?
//! which group gets the notification? does it have a secret?). Reading the device from the
//! store each time cost more than storing the data: on SQLite each read is a hand-off to a
//! reader thread and back, so an OsmAnd report paid two of them before its write. Ingestion
//! therefore reads devices through this cache.
//!
//! Freshness: an entry is used for at most [`DEVICE_CACHE_TTL`], and every change this process
//! makes to a device (update, move, suspension, deletion, secret) calls
//! [`DeviceCache::changed`] once the change is stored, which drops every entry: an entry
//! remembers the generation it was read under, and a read that raced with a change was made
//! under the old generation. A change made by *another* process (an admin command run against
//! the same database) is announced through the store
//! ([`crate::ports::Store::announce_device_change`]); every lookup first compares the store's
//! change stamp with the last one seen ([`DeviceCache::observe_stamp`]), so such a change too
//! is seen by the next lookup after the command returns. The TTL bounds staleness where a store
//! cannot announce. Unknown devices are never remembered: a device registered a moment ago is
//! taken at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::device::Device;
use crate::ids::Imei;

/// How long a device read from the store is used before it is read again.
pub const DEVICE_CACHE_TTL: Duration = Duration::from_secs(1);

/// Most devices remembered at once: bounds memory whatever devices connect.
pub const DEVICE_CACHE_ENTRIES: usize = 100_000;

/// What ingestion knows of a device.
#[derive(Clone, Debug, PartialEq)]
pub struct KnownDevice {
    pub device: Device,
    /// The SHA-256 of its secret, once asked for (`None`: not read yet).
    pub secret_hash: Option<Option<String>>,
}

struct Entry {
    known: KnownDevice,
    read_at: Instant,
    generation: u64,
}

#[derive(Default)]
pub struct DeviceCache {
    entries: Mutex<HashMap<Imei, Entry>>,
    generation: AtomicU64,
    /// The storage's device-change stamp when last looked at.
    stamp: AtomicU64,
}

/// The generation a read is made under: take it *before* reading the store.
#[derive(Clone, Copy, Debug)]
pub struct Generation(u64);

impl DeviceCache {
    /// The current generation, to pass to [`DeviceCache::remember`] after a store read.
    pub fn generation(&self) -> Generation {
        Generation(self.generation.load(Ordering::Acquire))
    }

    /// The device, if it was read recently and nothing changed since.
    pub fn get(&self, imei: &Imei) -> Option<KnownDevice> {
        let now = self.generation.load(Ordering::Acquire);
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(imei)
            .filter(|e| e.generation == now && e.read_at.elapsed() < DEVICE_CACHE_TTL)
            .map(|e| e.known.clone())
    }

    /// Remembers what was read from the store under `generation`. A read that raced with a
    /// change is remembered under the old generation and so never used.
    pub fn remember(&self, generation: Generation, known: KnownDevice) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= DEVICE_CACHE_ENTRIES && !entries.contains_key(&known.device.imei) {
            // Rare (that many devices within a TTL): start over rather than track ages.
            entries.clear();
        }
        entries.insert(
            known.device.imei.clone(),
            Entry {
                known,
                read_at: Instant::now(),
                generation: generation.0,
            },
        );
    }

    /// Compares the storage's device-change stamp ([`crate::ports::Store::device_change_stamp`])
    /// with the last one seen, and forgets every device when it moved: another process changed
    /// a device.
    pub fn observe_stamp(&self, stamp: u64) {
        if self.stamp.swap(stamp, Ordering::AcqRel) != stamp {
            self.changed();
        }
    }

    /// A device changed (call after the change is stored): forget every device.
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{DeviceStatus, GroupId, OrganizationId};
    use crate::time::now_ms;

    fn device(imei: &str) -> Device {
        Device {
            imei: Imei::parse(imei).unwrap(),
            organization: OrganizationId(1),
            group: GroupId(1),
            name: None,
            serial: None,
            status: DeviceStatus::Active,
            created_at: now_ms(),
            last_contact: None,
        }
    }

    fn known(imei: &str) -> KnownDevice {
        KnownDevice {
            device: device(imei),
            secret_hash: None,
        }
    }

    #[test]
    fn a_device_read_is_remembered() {
        let cache = DeviceCache::default();
        let g = cache.generation();
        cache.remember(g, known("359881234567899"));
        assert_eq!(
            cache.get(&Imei::parse("359881234567899").unwrap()),
            Some(known("359881234567899"))
        );
        assert_eq!(cache.get(&Imei::parse("356307042441013").unwrap()), None);
    }

    #[test]
    fn a_new_change_stamp_from_the_store_forgets_every_device() {
        let cache = DeviceCache::default();
        let imei = Imei::parse("359881234567899").unwrap();
        cache.observe_stamp(7);
        cache.remember(cache.generation(), known("359881234567899"));
        cache.observe_stamp(7);
        assert!(cache.get(&imei).is_some(), "the same stamp keeps the cache");
        cache.observe_stamp(8);
        assert_eq!(cache.get(&imei), None);
    }

    #[test]
    fn a_change_forgets_every_device_and_a_read_that_raced_with_it() {
        let cache = DeviceCache::default();
        let imei = Imei::parse("359881234567899").unwrap();
        cache.remember(cache.generation(), known("359881234567899"));
        // A read started before the change, remembered after it: never used.
        let before = cache.generation();
        cache.changed();
        assert_eq!(cache.get(&imei), None);
        cache.remember(before, known("359881234567899"));
        assert_eq!(cache.get(&imei), None);
        cache.remember(cache.generation(), known("359881234567899"));
        assert!(cache.get(&imei).is_some());
    }
}
