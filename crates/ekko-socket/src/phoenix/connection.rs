//! The Phoenix socket endpoint: upgrade checks, then one task per connection that owns the
//! socket, the channel state and the subscription streams (so ordering is decided in one place).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use ekko_api::EkkoSchema;
use ekko_api::http::SOCKET_PATH;
use ekko_connect::TokenService;
use ekko_core::Caller;
use futures::StreamExt;
use tokio::time::Instant;

use super::channel::Channel;
use super::frame::{self, DecodeError, Message, Vsn};

#[derive(Clone, Debug)]
pub struct SocketConfig {
    /// Close a connection that has sent nothing (not even a WebSocket ping) for this long.
    /// Clients heartbeat every 30 s, so this must stay well above that (Phoenix: 60 s).
    pub idle_timeout: Duration,
    /// Most subscriptions one socket may hold.
    pub max_subscriptions: usize,
    /// Largest inbound message.
    pub max_message_bytes: usize,
    /// A client that does not take a frame within this time is disconnected.
    pub send_timeout: Duration,
    /// graphql-transport-ws / graphql-ws: close with 4408 when no `connection_init` came
    /// within this time.
    pub init_timeout: Duration,
    /// graphql-transport-ws / graphql-ws: send `ping` / `ka` this often (never on Phoenix).
    pub keepalive: Option<Duration>,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            idle_timeout: Duration::from_secs(60),
            max_subscriptions: 100,
            max_message_bytes: 1024 * 1024,
            send_timeout: Duration::from_secs(10),
            init_timeout: Duration::from_secs(10),
            keepalive: None,
        }
    }
}

#[derive(Clone)]
pub struct SocketState {
    pub schema: EkkoSchema,
    pub tokens: Arc<TokenService>,
    pub config: Arc<SocketConfig>,
}

pub fn router(state: SocketState) -> Router {
    Router::new()
        .route(SOCKET_PATH, get(upgrade))
        .with_state(state)
}

/// The Phoenix subprotocol that carries a token: `base64url.bearer.phx.<base64url(token)>`.
const SUBPROTOCOL_TOKEN_PREFIX: &str = "base64url.bearer.phx.";

fn token_from_request(params: &HashMap<String, String>, headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return Some(v.to_owned());
    }
    for key in ["Authorization", "authorization", "token", "access_token"] {
        if let Some(v) = params.get(key) {
            return Some(v.clone());
        }
    }
    let protocols = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())?;
    protocols.split(',').map(str::trim).find_map(|p| {
        let b64 = p.strip_prefix(SUBPROTOCOL_TOKEN_PREFIX)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64.trim_end_matches('='))
            .ok()?;
        String::from_utf8(bytes).ok()
    })
}

fn forbidden(reason: String) -> Response {
    tracing::info!(%reason, "refused a socket connection");
    (StatusCode::FORBIDDEN, reason).into_response()
}

async fn upgrade(
    State(state): State<SocketState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return (
            StatusCode::BAD_REQUEST,
            "this is a WebSocket endpoint (Phoenix channels): connect with a WebSocket client, e.g. ws://HOST/services/ekko/v2/socket/websocket?vsn=2.0.0",
        )
            .into_response();
    };
    let params: HashMap<String, String> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let vsn = match Vsn::negotiate(params.get("vsn").map(String::as_str)) {
        Ok(v) => v,
        Err(reason) => return forbidden(reason),
    };
    let authn = match token_from_request(&params, &headers) {
        None => None,
        Some(t) => match crate::auth::authenticate(&state.tokens, &t) {
            Ok(a) => Some(a),
            Err(e) => return forbidden(e.to_string()),
        },
    };
    let expires_at = authn.as_ref().and_then(|a| a.expires_at);
    let caller: Option<Caller> = authn.map(|a| a.caller);
    let config = state.config.clone();
    ws.protocols(["phoenix"])
        .read_buffer_size(crate::WS_READ_BUFFER_BYTES)
        .max_message_size(config.max_message_bytes)
        .max_frame_size(config.max_message_bytes)
        .on_upgrade(move |socket| async move {
            let mut conn = Connection {
                socket,
                vsn,
                config,
                expires_at,
                channel: Channel::new(state.schema.clone(), caller, state.config.max_subscriptions),
            };
            conn.run().await;
        })
}

struct Connection {
    socket: WebSocket,
    vsn: Vsn,
    config: Arc<SocketConfig>,
    /// When the caller's access token expires: the socket closes then.
    expires_at: Option<Instant>,
    channel: Channel,
}

/// Why the loop ended, and what close frame (if any) to send.
enum Exit {
    ClientGone,
    Close(u16, String),
}

fn close_reason(reason: &str) -> String {
    // A close reason is at most 123 bytes.
    let mut r = reason.to_owned();
    while r.len() > 123 {
        r.pop();
    }
    r
}

impl Connection {
    async fn send(&mut self, msg: &Message) -> Result<(), Exit> {
        let text = frame::encode(self.vsn, msg);
        match tokio::time::timeout(
            self.config.send_timeout,
            self.socket.send(WsMessage::Text(text.into())),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Exit::ClientGone),
            // The client stopped reading: drop it rather than buffer without bound.
            Err(_) => Err(Exit::Close(
                1008,
                "client too slow: it did not read its messages".into(),
            )),
        }
    }

    async fn send_all(&mut self, msgs: Vec<Message>) -> Result<(), Exit> {
        for m in &msgs {
            self.send(m).await?;
        }
        Ok(())
    }

    async fn run(&mut self) {
        let exit = self.serve().await;
        if let Exit::Close(code, reason) = exit {
            tracing::debug!(code, %reason, "closing Phoenix socket");
            let frame = CloseFrame {
                code,
                reason: close_reason(&reason).into(),
            };
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                self.socket.send(WsMessage::Close(Some(frame))),
            )
            .await;
        }
    }

    async fn serve(&mut self) -> Exit {
        let mut idle_deadline = Instant::now() + self.config.idle_timeout;
        loop {
            let idle = tokio::time::sleep_until(idle_deadline);
            tokio::select! {
                inbound = self.socket.recv() => {
                    idle_deadline = Instant::now() + self.config.idle_timeout;
                    let inbound = match inbound {
                        Some(Ok(m)) => m,
                        // tungstenite refuses frames over max_message_bytes with a capacity
                        // error ("Message too long"): say so with 1009 rather than vanish.
                        Some(Err(e)) if e.to_string().contains("too long") => {
                            return Exit::Close(1009, format!("message larger than {} bytes", self.config.max_message_bytes));
                        }
                        _ => return Exit::ClientGone,
                    };
                    let text = match inbound {
                        WsMessage::Text(t) => t.to_string(),
                        WsMessage::Binary(b) => match self.vsn {
                            // V1 decodes JSON whatever the opcode, as Phoenix does.
                            Vsn::V1 => match String::from_utf8(b.to_vec()) {
                                Ok(t) => t,
                                Err(_) => return Exit::Close(1003, "binary frame is not UTF-8 JSON".into()),
                            },
                            Vsn::V2 => {
                                let Some(req) = frame::decode_binary_push_header(&b) else {
                                    return Exit::Close(1003, "malformed binary frame".into());
                                };
                                let reply = Message::reply_to(&req, req.join_ref.clone(), "error",
                                    serde_json::json!({"reason": "binary payloads are not supported on this socket"}));
                                if let Err(e) = self.send(&reply).await { return e; }
                                continue;
                            }
                        },
                        WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
                        WsMessage::Close(_) => return Exit::ClientGone,
                    };
                    let msg = match frame::decode(self.vsn, &text) {
                        Ok(m) => m,
                        Err(DecodeError::ForeignProtocol(r)) => return Exit::Close(4400, r),
                        Err(DecodeError::Malformed(r)) => return Exit::Close(1002, r),
                    };
                    let out = self.channel.handle(msg).await;
                    if let Err(e) = self.send_all(out).await { return e; }
                }
                Some(outcome) = self.channel.pending.next() => {
                    let out = self.channel.setup_finished(outcome);
                    if let Err(e) = self.send_all(out).await { return e; }
                }
                Some((id, response)) = self.channel.subscriptions.next() => {
                    let slow = ekko_api::errors::is_slow_subscriber(&response);
                    let push = Channel::data_push(&id, response);
                    if let Err(e) = self.send(&push).await { return e; }
                    if slow {
                        return Exit::Close(1008, "client too slow: a subscription's queue filled".into());
                    }
                }
                _ = crate::auth::until(self.expires_at), if self.expires_at.is_some() => {
                    return Exit::Close(crate::auth::TOKEN_EXPIRED_CODE, crate::auth::TOKEN_EXPIRED_REASON.into());
                }
                _ = idle => {
                    return Exit::Close(1001, format!("idle for {} s: send a heartbeat at least every 30 s", self.config.idle_timeout.as_secs()));
                }
            }
        }
    }
}
