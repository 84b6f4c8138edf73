//! SQLite implementation of Connect's port ([`OAuthStore`]): applications, authorization
//! codes, consents, refresh tokens with their client, revoked access tokens.

use async_trait::async_trait;
use ekko_core::AccountId;
use ekko_core::error::StoreError;
use ekko_core::oauth::{
    Application, AuthorizationCode, CodeOutcome, OAuthStore, RefreshGrant, RefreshOutcome,
    RotationMode,
};
use ekko_core::ports::StoreResult;
use ekko_core::time::Timestamp;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, backend, inserted, ts};

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn app_from_row(r: &SqliteRow) -> StoreResult<Application> {
    let uris: String = r.try_get("redirect_uris").map_err(backend)?;
    let users: String = r.try_get("authorized_users").map_err(backend)?;
    let owner: String = r.try_get("owner").map_err(backend)?;
    Ok(Application {
        uid: r.try_get("uid").map_err(backend)?,
        secret_hash: r.try_get("secret_hash").map_err(backend)?,
        name: r.try_get("name").map_err(backend)?,
        redirect_uris: serde_json::from_str(&uris).map_err(corrupt)?,
        confidential: r.try_get::<i64, _>("confidential").map_err(backend)? != 0,
        private: r.try_get::<i64, _>("private").map_err(backend)? != 0,
        authorized_users: serde_json::from_str(&users).map_err(corrupt)?,
        owner: AccountId::parse(&owner).map_err(corrupt)?,
        created_at: ts(r.try_get("created_at").map_err(backend)?)?,
    })
}

fn code_from_row(r: &SqliteRow) -> StoreResult<AuthorizationCode> {
    let account: String = r.try_get("account").map_err(backend)?;
    Ok(AuthorizationCode {
        code_hash: r.try_get("code_hash").map_err(backend)?,
        client_id: r.try_get("client_id").map_err(backend)?,
        account: AccountId::parse(&account).map_err(corrupt)?,
        redirect_uri: r.try_get("redirect_uri").map_err(backend)?,
        scope: r.try_get("scope").map_err(backend)?,
        code_challenge: r.try_get("code_challenge").map_err(backend)?,
        nonce: r.try_get("nonce").map_err(backend)?,
        created_at: ts(r.try_get("created_at").map_err(backend)?)?,
        expires_at: ts(r.try_get("expires_at").map_err(backend)?)?,
    })
}

fn refresh_from_row(r: &SqliteRow) -> StoreResult<RefreshGrant> {
    let account: String = r.try_get("account").map_err(backend)?;
    Ok(RefreshGrant {
        token_hash: r.try_get("token_hash").map_err(backend)?,
        family: r.try_get("family").map_err(backend)?,
        account: Some(AccountId::parse(&account).map_err(corrupt)?),
        client_id: r.try_get("client_id").map_err(backend)?,
        scope: r.try_get("scope").map_err(backend)?,
        created_at: ts(r.try_get("created_at").map_err(backend)?)?,
    })
}

/// How recently a refresh token may have been spent for a second presentation to count as a
/// concurrent duplicate rather than a replay.
const CONCURRENT_ROTATION_GRACE_MS: i64 = 10_000;

#[async_trait]

impl OAuthStore for SqliteStore {
    async fn insert_application(&self, a: &Application) -> StoreResult<()> {
        let r = sqlx::query(
            "INSERT INTO oauth_applications (uid, secret_hash, name, redirect_uris, confidential, private, authorized_users, owner, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&a.uid)
        .bind(&a.secret_hash)
        .bind(&a.name)
        .bind(serde_json::to_string(&a.redirect_uris).map_err(corrupt)?)
        .bind(i64::from(a.confidential))
        .bind(i64::from(a.private))
        .bind(serde_json::to_string(&a.authorized_users).map_err(corrupt)?)
        .bind(a.owner.to_string())
        .bind(a.created_at.timestamp_millis())
        .execute(&self.writer)
        .await;
        inserted(r, || format!("application {}", a.uid))
    }

    async fn application(&self, uid: &str) -> StoreResult<Option<Application>> {
        sqlx::query("SELECT * FROM oauth_applications WHERE uid = ?")
            .bind(uid)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?
            .as_ref()
            .map(app_from_row)
            .transpose()
    }

    async fn applications_of(&self, owner: AccountId) -> StoreResult<Vec<Application>> {
        let rows = sqlx::query(
            "SELECT * FROM oauth_applications WHERE owner = ? ORDER BY created_at, uid",
        )
        .bind(owner.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter().map(app_from_row).collect()
    }

    async fn insert_code(&self, c: &AuthorizationCode) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO oauth_codes (code_hash, client_id, account, redirect_uri, scope, code_challenge, nonce, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.code_hash)
        .bind(&c.client_id)
        .bind(c.account.to_string())
        .bind(&c.redirect_uri)
        .bind(&c.scope)
        .bind(&c.code_challenge)
        .bind(&c.nonce)
        .bind(c.created_at.timestamp_millis())
        .bind(c.expires_at.timestamp_millis())
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn consume_code(&self, code_hash: &str, now: Timestamp) -> StoreResult<CodeOutcome> {
        let now = now.timestamp_millis();
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let row = sqlx::query(
            "UPDATE oauth_codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL RETURNING *",
        )
        .bind(now)
        .bind(code_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let outcome = match row {
            Some(r) => CodeOutcome::Consumed(code_from_row(&r)?),
            None => {
                let exists: Option<i64> =
                    sqlx::query_scalar("SELECT 1 FROM oauth_codes WHERE code_hash = ?")
                        .bind(code_hash)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(backend)?;
                if exists.is_some() {
                    sqlx::query(
                        "UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL",
                    )
                    .bind(now)
                    .bind(code_hash)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                    CodeOutcome::Replayed
                } else {
                    CodeOutcome::Unknown
                }
            }
        };
        tx.commit().await.map_err(backend)?;
        Ok(outcome)
    }

    async fn has_consent(
        &self,
        account: AccountId,
        client_id: &str,
        scope: &str,
    ) -> StoreResult<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM oauth_consents WHERE account = ? AND client_id = ? AND scope = ?",
        )
        .bind(account.to_string())
        .bind(client_id)
        .bind(scope)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        Ok(found.is_some())
    }

    async fn insert_consent(
        &self,
        account: AccountId,
        client_id: &str,
        scope: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT OR IGNORE INTO oauth_consents (account, client_id, scope, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(account.to_string())
        .bind(client_id)
        .bind(scope)
        .bind(now.timestamp_millis())
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn insert_refresh(&self, g: &RefreshGrant) -> StoreResult<()> {
        let account = g
            .account
            .ok_or_else(|| StoreError::Backend("a refresh token needs an account".into()))?;
        let g = g.clone();
        // Through the group-commit writer: concurrent sign-ins share one fsync.
        self.group
            .run(1, move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO refresh_tokens (token_hash, family, account, scope, created_at, client_id) VALUES (?, ?, ?, ?, ?, ?)",
                    )
                    .bind(&g.token_hash)
                    .bind(&g.family)
                    .bind(account.to_string())
                    .bind(&g.scope)
                    .bind(g.created_at.timestamp_millis())
                    .bind(&g.client_id)
                    .execute(&mut *conn)
                    .await
                    .map_err(backend)?;
                    Ok(())
                })
            })
            .await
    }

    async fn rotate_refresh(
        &self,
        presented: &str,
        replacement: &str,
        client: Option<&str>,
        mode: RotationMode,
        now: Timestamp,
    ) -> StoreResult<RefreshOutcome> {
        let now = now.timestamp_millis();
        let (presented, replacement) = (presented.to_owned(), replacement.to_owned());
        let client = client.map(str::to_owned);
        // The rotation runs as one group-commit job: its reads and writes see one savepoint, so
        // the check-and-spend stays atomic, and concurrent refreshes share one fsync.
        self.group
            .run(1, move |conn| {
                Box::pin(async move {
                let row = sqlx::query(
                    "SELECT family, account, scope, client_id, previous_hash, spent_at, revoked_at FROM refresh_tokens WHERE token_hash = ?",
                )
                .bind(&presented)
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend)?;
                let Some(row) = row else {
                    return Ok(RefreshOutcome::Unknown);
                };
                let family: String = row.try_get("family").map_err(backend)?;
                let account: String = row.try_get("account").map_err(backend)?;
                let scope: String = row.try_get("scope").map_err(backend)?;
                let owner_client: Option<String> = row.try_get("client_id").map_err(backend)?;
                let previous: Option<String> = row.try_get("previous_hash").map_err(backend)?;
                if let Some(owner) = owner_client.as_deref()
                    && client.as_deref() != Some(owner)
                {
                    return Ok(RefreshOutcome::WrongClient);
                }
                // The conditional UPDATE is the atomic check-and-spend.
                let live = match mode {
                    RotationMode::Immediate => sqlx::query(
                        "UPDATE refresh_tokens SET spent_at = ? WHERE token_hash = ? AND spent_at IS NULL AND revoked_at IS NULL",
                    )
                    .bind(now)
                    .bind(&presented)
                    .execute(&mut *conn)
                    .await
                    .map_err(backend)?
                    .rows_affected()
                        == 1,
                    RotationMode::RevokeOnUse => {
                        let spent: Option<i64> = row.try_get("spent_at").map_err(backend)?;
                        let revoked: Option<i64> = row.try_get("revoked_at").map_err(backend)?;
                        if spent.is_none() && revoked.is_none() {
                            // Using this token ends its predecessor's grace window.
                            if let Some(prev) = previous.as_deref() {
                                sqlx::query(
                                    "UPDATE refresh_tokens SET spent_at = ? WHERE token_hash = ? AND spent_at IS NULL",
                                )
                                .bind(now)
                                .bind(prev)
                                .execute(&mut *conn)
                                .await
                                .map_err(backend)?;
                            }
                            true
                        } else {
                            false
                        }
                    }
                };
                if !live {
                    // A token spent within the last few seconds and not revoked lost a race with a
                    // concurrent refresh of the same token: refuse it without revoking the family, or
                    // the winner's fresh token would die too (doorkeeper #486 / protocols.md §6 #15).
                    let spent: Option<i64> = row.try_get("spent_at").map_err(backend)?;
                    let revoked: Option<i64> = row.try_get("revoked_at").map_err(backend)?;
                    if mode == RotationMode::Immediate
                        && revoked.is_none()
                        && spent.is_some_and(|t| now - t <= CONCURRENT_ROTATION_GRACE_MS)
                    {
                        return Ok(RefreshOutcome::RecentlyRotated);
                    }
                    sqlx::query(
                        "UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL",
                    )
                    .bind(now)
                    .bind(&family)
                    .execute(&mut *conn)
                    .await
                    .map_err(backend)?;
                    return Ok(RefreshOutcome::Reused);
                }
                let previous_hash = (mode == RotationMode::RevokeOnUse).then_some(&presented);
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, family, account, scope, created_at, client_id, previous_hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&replacement)
                .bind(&family)
                .bind(&account)
                .bind(&scope)
                .bind(now)
                .bind(&owner_client)
                .bind(previous_hash)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
                Ok(RefreshOutcome::Rotated {
                    account: AccountId::parse(&account).map_err(corrupt)?,
                    scope,
                    family,
                })
                })
            })
            .await
    }

    async fn refresh_grant(&self, token_hash: &str) -> StoreResult<Option<RefreshGrant>> {
        sqlx::query(
            "SELECT * FROM refresh_tokens WHERE token_hash = ? AND spent_at IS NULL AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?
        .as_ref()
        .map(refresh_from_row)
        .transpose()
    }

    async fn revoke_refresh_family(&self, family: &str, now: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL",
        )
        .bind(now.timestamp_millis())
        .bind(family)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn revoke_access_token(&self, jti: &str, expires_at: Timestamp) -> StoreResult<()> {
        sqlx::query("INSERT OR IGNORE INTO revoked_access_tokens (jti, expires_at) VALUES (?, ?)")
            .bind(jti)
            .bind(expires_at.timestamp_millis())
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn revoked_access_tokens(&self, now: Timestamp) -> StoreResult<Vec<String>> {
        sqlx::query_scalar("SELECT jti FROM revoked_access_tokens WHERE expires_at > ?")
            .bind(now.timestamp_millis())
            .fetch_all(&self.reader)
            .await
            .map_err(backend)
    }

    async fn update_password_hash(
        &self,
        account: AccountId,
        password_hash: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let r = sqlx::query("UPDATE accounts SET password_hash = ?, updated_at = ? WHERE id = ?")
            .bind(password_hash)
            .bind(now.timestamp_millis())
            .bind(account.to_string())
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekko_core::time::now_ms;

    async fn store_with_account() -> (tempfile::TempDir, SqliteStore, AccountId) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).await.unwrap();
        let a = crate::sqlite::test_support::account(&s, "a@b.c").await;
        (dir, s, a.id)
    }

    fn grant(h: &str, account: AccountId, client: Option<&str>) -> RefreshGrant {
        RefreshGrant {
            token_hash: h.into(),
            family: "fam".into(),
            account: Some(account),
            client_id: client.map(str::to_owned),
            scope: "public".into(),
            created_at: now_ms(),
        }
    }

    #[tokio::test]
    async fn refresh_token_of_a_client_refuses_other_clients_and_keeps_its_client() {
        let (_d, s, a) = store_with_account().await;
        s.insert_refresh(&grant("t1", a, Some("app")))
            .await
            .unwrap();
        let rot = |p: &'static str, n: &'static str, c: Option<&'static str>| {
            let s = s.clone();
            async move {
                s.rotate_refresh(p, n, c, RotationMode::Immediate, now_ms())
                    .await
                    .unwrap()
            }
        };
        assert_eq!(rot("t1", "x", None).await, RefreshOutcome::WrongClient);
        assert_eq!(
            rot("t1", "x", Some("other")).await,
            RefreshOutcome::WrongClient
        );
        assert!(matches!(
            rot("t1", "t2", Some("app")).await,
            RefreshOutcome::Rotated { .. }
        ));
        assert_eq!(
            s.refresh_grant("t2")
                .await
                .unwrap()
                .unwrap()
                .client_id
                .as_deref(),
            Some("app")
        );
        // A duplicate presented moments later lost a race: refused, family intact.
        assert_eq!(
            rot("t1", "t3", Some("app")).await,
            RefreshOutcome::RecentlyRotated
        );
        assert!(s.refresh_grant("t2").await.unwrap().is_some());
        // Presented again after the grace window, it is a replay: the family is revoked.
        let later = now_ms() + chrono::Duration::seconds(11);
        let replay = s
            .rotate_refresh("t1", "t3", Some("app"), RotationMode::Immediate, later)
            .await
            .unwrap();
        assert_eq!(replay, RefreshOutcome::Reused);
        assert!(s.refresh_grant("t2").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn revoke_on_use_keeps_the_old_token_until_its_successor_is_used() {
        let (_d, s, a) = store_with_account().await;
        s.insert_refresh(&grant("t1", a, None)).await.unwrap();
        let m = RotationMode::RevokeOnUse;
        let r = |p, n| s.rotate_refresh(p, n, None, m, now_ms());
        assert!(matches!(
            r("t1", "t2").await.unwrap(),
            RefreshOutcome::Rotated { .. }
        ));
        // Grace window: t1 still works (the response carrying t2 may have been lost).
        assert!(matches!(
            r("t1", "t2b").await.unwrap(),
            RefreshOutcome::Rotated { .. }
        ));
        // Using t2 ends t1's window.
        assert!(matches!(
            r("t2", "t3").await.unwrap(),
            RefreshOutcome::Rotated { .. }
        ));
        assert_eq!(r("t1", "t4").await.unwrap(), RefreshOutcome::Reused);
    }

    #[tokio::test]
    async fn a_code_is_spent_once_and_a_replay_revokes_its_tokens() {
        let (_d, s, a) = store_with_account().await;
        let app = Application {
            uid: "u".into(),
            secret_hash: "h".into(),
            name: "n".into(),
            redirect_uris: vec!["https://x/cb".into()],
            confidential: true,
            private: false,
            authorized_users: vec![],
            owner: a,
            created_at: now_ms(),
        };
        s.insert_application(&app).await.unwrap();
        assert_eq!(s.application("u").await.unwrap().unwrap(), app);
        let code = AuthorizationCode {
            code_hash: "c".into(),
            client_id: "u".into(),
            account: a,
            redirect_uri: "https://x/cb".into(),
            scope: "public".into(),
            code_challenge: "ch".into(),
            nonce: None,
            created_at: now_ms(),
            expires_at: now_ms(),
        };
        s.insert_code(&code).await.unwrap();
        assert_eq!(
            s.consume_code("c", now_ms()).await.unwrap(),
            CodeOutcome::Consumed(code)
        );
        let mut g = grant("t1", a, Some("u"));
        g.family = "c".into();
        s.insert_refresh(&g).await.unwrap();
        assert_eq!(
            s.consume_code("c", now_ms()).await.unwrap(),
            CodeOutcome::Replayed
        );
        assert!(s.refresh_grant("t1").await.unwrap().is_none());
        assert_eq!(
            s.consume_code("zz", now_ms()).await.unwrap(),
            CodeOutcome::Unknown
        );
    }
}
