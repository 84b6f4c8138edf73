//! In-process notification bus: the embedded implementation of [`ekko_core::ports::Bus`].
//!
//! - Fan-out is by device id: a publish touches only the subscribers of that device.
//! - Each subscriber has a bounded queue. Publishing never waits: a subscriber whose queue is
//!   full is removed and told so ([`BusItem::Overflowed`]), others are unaffected.
//! - Dropping a subscription stream removes it from every device it listened to.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use ekko_core::Imei;
use ekko_core::ports::{Bus, BusItem, BusStream, Published};
use futures::Stream;
use tokio::sync::mpsc;

/// Default per-subscriber queue length.
pub const DEFAULT_QUEUE: usize = 1024;

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Arc<Published>>,
    overflowed: Arc<AtomicBool>,
}

#[derive(Default)]
struct Registry {
    by_device: HashMap<Imei, Vec<Subscriber>>,
}

pub struct InProcessBus {
    registry: Arc<RwLock<Registry>>,
    next_id: AtomicU64,
    queue: usize,
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::with_queue(DEFAULT_QUEUE)
    }
}

impl InProcessBus {
    pub fn with_queue(queue: usize) -> Self {
        InProcessBus {
            registry: Arc::default(),
            next_id: AtomicU64::new(1),
            queue: queue.max(1),
        }
    }

    /// Number of (device, subscriber) registrations: for tests and metrics.
    pub fn registrations(&self) -> usize {
        self.registry
            .read()
            .expect("bus registry lock")
            .by_device
            .values()
            .map(Vec::len)
            .sum()
    }
}

fn remove_subscriber(registry: &RwLock<Registry>, devices: &[Imei], id: u64) {
    let mut reg = registry.write().expect("bus registry lock");
    for d in devices {
        if let Some(subs) = reg.by_device.get_mut(d) {
            subs.retain(|s| s.id != id);
            if subs.is_empty() {
                reg.by_device.remove(d);
            }
        }
    }
}

impl Bus for InProcessBus {
    fn publish(&self, notification: Arc<Published>) {
        let device = notification.device().clone();
        let mut overflowed = Vec::new();
        {
            let reg = self.registry.read().expect("bus registry lock");
            let Some(subs) = reg.by_device.get(&device) else {
                return;
            };
            for s in subs {
                match s.tx.try_send(notification.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        s.overflowed.store(true, Ordering::Release);
                        overflowed.push(s.id);
                    }
                    // The stream was dropped; its guard removes it shortly.
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        if !overflowed.is_empty() {
            let mut reg = self.registry.write().expect("bus registry lock");
            // Drop the overflowed subscribers' senders everywhere, so their streams end.
            for subs in reg.by_device.values_mut() {
                subs.retain(|s| !overflowed.contains(&s.id));
            }
            reg.by_device.retain(|_, subs| !subs.is_empty());
            tracing::warn!(
                count = overflowed.len(),
                "dropped subscribers whose queue was full"
            );
        }
    }

    fn subscribe(&self, devices: &[Imei]) -> BusStream {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.queue);
        let overflowed = Arc::new(AtomicBool::new(false));
        {
            let mut reg = self.registry.write().expect("bus registry lock");
            for d in devices {
                reg.by_device
                    .entry(d.clone())
                    .or_default()
                    .push(Subscriber {
                        id,
                        tx: tx.clone(),
                        overflowed: overflowed.clone(),
                    });
            }
        }
        Box::pin(Subscription {
            rx,
            overflowed,
            told_overflow: false,
            guard: Guard {
                registry: self.registry.clone(),
                devices: devices.to_vec(),
                id,
            },
        })
    }
}

struct Guard {
    registry: Arc<RwLock<Registry>>,
    devices: Vec<Imei>,
    id: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        remove_subscriber(&self.registry, &self.devices, self.id);
    }
}

struct Subscription {
    rx: mpsc::Receiver<Arc<Published>>,
    overflowed: Arc<AtomicBool>,
    told_overflow: bool,
    #[allow(dead_code)] // held for its Drop
    guard: Guard,
}

impl Stream for Subscription {
    type Item = BusItem;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BusItem>> {
        if self.told_overflow {
            return Poll::Ready(None);
        }
        // An overflowed subscriber is told at once rather than after draining a stale queue.
        if self.overflowed.load(Ordering::Acquire) {
            self.told_overflow = true;
            return Poll::Ready(Some(BusItem::Overflowed));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(n)) => Poll::Ready(Some(BusItem::Notification(n))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekko_core::notification::DeviceNotification;
    use ekko_core::time::now_ms;
    use ekko_core::track::Track;
    use futures::StreamExt;

    fn imei(s: &str) -> Imei {
        Imei::parse(s).unwrap()
    }

    fn track(i: &Imei, id: i64) -> Arc<Published> {
        Arc::new(Published {
            group: ekko_core::fleet::GroupId(1),
            notification: DeviceNotification::Track(Track {
                id,
                imei: i.clone(),
                recorded_at: now_ms(),
                received_at: now_ms(),
                coordinates: None,
                fields: vec![],
            }),
        })
    }

    #[tokio::test]
    async fn delivers_only_to_subscribers_of_that_device() {
        let bus = InProcessBus::default();
        let a = imei("359881234567899");
        let b = imei("356307042441013");
        let mut sa = bus.subscribe(std::slice::from_ref(&a));
        let mut sb = bus.subscribe(std::slice::from_ref(&b));
        bus.publish(track(&a, 1));
        match sa.next().await.unwrap() {
            BusItem::Notification(n) => assert_eq!(n.device(), &a),
            other => panic!("{other:?}"),
        }
        assert!(futures::poll!(sb.next()).is_pending());
    }

    #[tokio::test]
    async fn dropping_a_subscription_unregisters_it() {
        let bus = InProcessBus::default();
        let a = imei("359881234567899");
        let s = bus.subscribe(std::slice::from_ref(&a));
        let s2 = bus.subscribe(std::slice::from_ref(&a));
        assert_eq!(bus.registrations(), 2);
        drop(s);
        assert_eq!(bus.registrations(), 1);
        drop(s2);
        assert_eq!(bus.registrations(), 0);
    }

    #[tokio::test]
    async fn slow_subscriber_is_dropped_and_others_unaffected() {
        let bus = InProcessBus::with_queue(2);
        let a = imei("359881234567899");
        let mut slow = bus.subscribe(std::slice::from_ref(&a));
        let mut fast = bus.subscribe(std::slice::from_ref(&a));
        for i in 0..2 {
            bus.publish(track(&a, i));
            assert!(matches!(fast.next().await, Some(BusItem::Notification(_))));
        }
        bus.publish(track(&a, 3)); // slow's queue (2) is full now
        assert!(matches!(slow.next().await, Some(BusItem::Overflowed)));
        assert!(slow.next().await.is_none());
        assert!(matches!(fast.next().await, Some(BusItem::Notification(_))));
        assert_eq!(bus.registrations(), 1);
    }
}
