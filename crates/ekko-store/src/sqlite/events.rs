//! Presence events, messages and pokes: append-only tables; the store assigns the ids.

use ekko_core::error::StoreError;
use ekko_core::notification::{DeviceMessage, NewMessage, NewPoke, NewPresence, Poke, Presence};
use ekko_core::ports::StoreResult;
use ekko_core::time::Timestamp;

use super::{SqliteStore, backend};

impl SqliteStore {
    pub(super) async fn insert_presence_row(&self, p: &NewPresence) -> StoreResult<Presence> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO presences (imei, kind, reason, protocol, time) VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(p.imei.as_str())
        .bind(p.kind.as_str())
        .bind(p.reason.as_deref())
        .bind(p.protocol.as_deref())
        .bind(p.time.timestamp_millis())
        .fetch_one(&self.writer)
        .await
        .map_err(backend)?;
        Ok(Presence {
            id,
            imei: p.imei.clone(),
            kind: p.kind,
            reason: p.reason.clone(),
            protocol: p.protocol.clone(),
            time: p.time,
        })
    }

    pub(super) async fn insert_message_row(
        &self,
        m: &NewMessage,
        received_at: Timestamp,
    ) -> StoreResult<DeviceMessage> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO messages (imei, parent_id, channel, kind, sender, recipient, payload, recorded_at, received_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(m.imei.as_str())
        .bind(m.parent_id)
        .bind(&m.channel)
        .bind(m.kind.as_str())
        .bind(&m.sender)
        .bind(&m.recipient)
        .bind(&m.payload)
        .bind(m.recorded_at.map(|t| t.timestamp_millis()))
        .bind(received_at.timestamp_millis())
        .fetch_one(&self.writer)
        .await
        .map_err(backend)?;
        Ok(DeviceMessage {
            id,
            imei: m.imei.clone(),
            parent_id: m.parent_id,
            channel: m.channel.clone(),
            kind: m.kind,
            sender: m.sender.clone(),
            recipient: m.recipient.clone(),
            payload: m.payload.clone(),
            recorded_at: m.recorded_at,
            received_at,
        })
    }

    pub(super) async fn insert_poke_row(
        &self,
        p: &NewPoke,
        received_at: Timestamp,
    ) -> StoreResult<Poke> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO pokes (imei, sender, namespace, payload, received_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(p.imei.as_str())
        .bind(&p.sender)
        .bind(&p.namespace)
        .bind(&p.payload)
        .bind(received_at.timestamp_millis())
        .fetch_one(&self.writer)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                StoreError::Backend(format!("device {} is not registered", p.imei))
            }
            e => backend(e),
        })?;
        Ok(Poke {
            id,
            imei: p.imei.clone(),
            sender: p.sender.clone(),
            namespace: p.namespace.clone(),
            payload: p.payload.clone(),
            received_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use ekko_core::Imei;
    use ekko_core::notification::{MessageKind, PresenceKind};
    use ekko_core::ports::Store;
    use ekko_core::time::now_ms;

    use super::*;

    async fn store_with_device() -> (tempfile::TempDir, SqliteStore, Imei) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).await.unwrap();
        let a = crate::sqlite::test_support::account(&s, "a@b.c").await;
        let imei = crate::sqlite::test_support::device(&s, &a, "359881234567899")
            .await
            .imei;
        (dir, s, imei)
    }

    #[tokio::test]
    async fn presences_messages_and_pokes_get_increasing_ids_from_the_store() {
        let (_d, s, imei) = store_with_device().await;
        let p1 = s
            .insert_presence(&NewPresence {
                imei: imei.clone(),
                kind: PresenceKind::Connect,
                reason: None,
                protocol: Some("osmand".into()),
                time: now_ms(),
            })
            .await
            .unwrap();
        let p2 = s
            .insert_presence(&NewPresence {
                imei: imei.clone(),
                kind: PresenceKind::Disconnect,
                reason: Some("timeout".into()),
                protocol: None,
                time: now_ms(),
            })
            .await
            .unwrap();
        assert!(p2.id > p1.id);
        let new_message = NewMessage {
            imei: imei.clone(),
            parent_id: None,
            channel: "com.example.chat".into(),
            kind: MessageKind::Message,
            sender: "me".into(),
            recipient: imei.to_string(),
            payload: vec![0, 1, 255],
            recorded_at: None,
        };
        let m1 = s.insert_message(&new_message, now_ms()).await.unwrap();
        let m2 = s.insert_message(&new_message, now_ms()).await.unwrap();
        assert!(m2.id > m1.id);
        assert_eq!(m1.payload, vec![0, 1, 255]);
        let new_poke = NewPoke {
            imei: imei.clone(),
            sender: "Device Manager".into(),
            namespace: "campaign::status".into(),
            payload: b"{}".to_vec(),
        };
        let k1 = s.insert_poke(&new_poke, now_ms()).await.unwrap();
        let k2 = s.insert_poke(&new_poke, now_ms()).await.unwrap();
        assert!(k2.id > k1.id);
    }

    #[tokio::test]
    async fn a_poke_for_an_unregistered_device_is_refused() {
        let (_d, s, _imei) = store_with_device().await;
        let other = Imei::parse("490154203237518").unwrap();
        let r = s
            .insert_poke(
                &NewPoke {
                    imei: other,
                    sender: "x".into(),
                    namespace: "y".into(),
                    payload: vec![],
                },
                now_ms(),
            )
            .await;
        assert!(r.is_err());
    }
}
