//! One task per graphql-transport-ws / graphql-ws socket: it owns the socket, the session state
//! and the operation streams, so ordering is decided in one place.

use std::collections::HashMap;
use std::time::Duration;

use async_graphql::Response as GqlResponse;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use ekko_api::errors::is_slow_subscriber;
use ekko_api::{OperationKind, RequestAuth, SubscriptionReady, operation_kind};
use ekko_core::Caller;
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, FuturesUnordered};
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use tokio::time::Instant;
use tokio_stream::StreamMap;

use super::codec::{self, ClientMessage, Operation, Protocol, ServerMessage};
use crate::auth::{self, Authenticated, TOKEN_EXPIRED_CODE, TOKEN_EXPIRED_REASON};
use crate::phoenix::SocketState;
use crate::phoenix::channel::{response_json, setup};

const SUBSCRIBE_SETUP_TIMEOUT: Duration = Duration::from_secs(10);
pub const SLOW_CLIENT_CODE: u16 = 1008;

/// Handles a WebSocket upgrade on the GraphQL path. An `Authorization` header, if any, must be
/// valid (HTTP 401 otherwise); a `connection_init` payload may then name another caller.
pub async fn upgrade(
    state: SocketState,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    let header_auth = match headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""))
    {
        None => None,
        Some(v) => match auth::authenticate(&state.tokens, v) {
            Ok(a) => Some(a),
            Err(e) => return ekko_api::http::invalid_token_response(&e),
        },
    };
    let offered = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let protocol = Protocol::choose(offered);
    let config = state.config.clone();
    let ws = ws
        .protocols([Protocol::TRANSPORT_WS, Protocol::LEGACY_WS])
        .read_buffer_size(crate::WS_READ_BUFFER_BYTES)
        .max_message_size(config.max_message_bytes)
        .max_frame_size(config.max_message_bytes);
    ws.on_upgrade(move |mut socket| async move {
        let Some(protocol) = protocol else {
            close(
                &mut socket,
                4406,
                "Subprotocol not acceptable: offer graphql-transport-ws or graphql-ws",
            )
            .await;
            return;
        };
        let mut conn = Connection {
            socket,
            protocol,
            state,
            header_auth,
            auth: None,
            init_received: false,
            next_serial: 0,
            active: HashMap::new(),
            streams: StreamMap::new(),
            pending: FuturesUnordered::new(),
        };
        conn.run().await;
    })
    .into_response()
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let mut r = reason.to_owned();
    while r.len() > 123 {
        r.pop();
    }
    tracing::debug!(code, reason = %r, "closing GraphQL WebSocket");
    let frame = CloseFrame {
        code,
        reason: r.into(),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        socket.send(WsMessage::Close(Some(frame))),
    )
    .await;
}

/// An item of an operation's stream: a result, or the end of the operation.
type Item = Option<GqlResponse>;

struct Setup {
    id: String,
    serial: u64,
    result: Result<BoxStream<'static, GqlResponse>, GqlResponse>,
}

struct Connection {
    socket: WebSocket,
    protocol: Protocol,
    state: SocketState,
    header_auth: Option<Authenticated>,
    /// Set by `connection_ack`: the caller of every operation on this socket.
    auth: Option<Option<Authenticated>>,
    init_received: bool,
    next_serial: u64,
    /// Ids in use (setting up or streaming), each with the serial of its `subscribe`, so that
    /// a setup that finishes after its id was completed (and perhaps reused) is dropped.
    active: HashMap<String, u64>,
    streams: StreamMap<String, BoxStream<'static, Item>>,
    pending: FuturesUnordered<BoxFuture<'static, Setup>>,
}

enum Exit {
    ClientGone,
    Close(u16, String),
}

impl Connection {
    fn caller(&self) -> Option<Caller> {
        self.auth
            .as_ref()
            .and_then(|a| a.as_ref())
            .map(|a| a.caller.clone())
    }

    async fn send(&mut self, msg: ServerMessage) -> Result<(), Exit> {
        let text = codec::encode(self.protocol, &msg);
        match tokio::time::timeout(
            self.state.config.send_timeout,
            self.socket.send(WsMessage::Text(text.into())),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Exit::ClientGone),
            Err(_) => Err(Exit::Close(
                SLOW_CLIENT_CODE,
                "client too slow: it did not read its messages".into(),
            )),
        }
    }

    async fn run(&mut self) {
        if let Exit::Close(code, reason) = self.serve().await {
            close(&mut self.socket, code, &reason).await;
        }
    }

    async fn serve(&mut self) -> Exit {
        let config = self.state.config.clone();
        let init_deadline = Instant::now() + config.init_timeout;
        let mut keepalive = config.keepalive.map(|every| {
            let mut i = tokio::time::interval_at(Instant::now() + every, every);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        loop {
            let acked = self.auth.is_some();
            let expiry = self
                .auth
                .as_ref()
                .and_then(|a| a.as_ref())
                .and_then(|a| a.expires_at);
            tokio::select! {
                inbound = self.socket.recv() => {
                    let Some(Ok(inbound)) = inbound else { return Exit::ClientGone };
                    let text = match inbound {
                        WsMessage::Text(t) => t.to_string(),
                        WsMessage::Binary(_) => {
                            if let Err(e) = self.refuse("binary messages are not supported: send JSON text").await {
                                return e;
                            }
                            continue;
                        }
                        WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
                        WsMessage::Close(_) => return Exit::ClientGone,
                    };
                    let msg = match codec::decode(self.protocol, &text) {
                        Ok(m) => m,
                        Err(e) => {
                            if let Err(e) = self.refuse(&e.0).await { return e; }
                            continue;
                        }
                    };
                    if let Err(e) = self.handle(msg).await { return e; }
                }
                Some(setup) = self.pending.next() => {
                    if let Err(e) = self.setup_finished(setup).await { return e; }
                }
                Some((id, item)) = self.streams.next() => {
                    if let Err(e) = self.emit(id, item).await { return e; }
                }
                _ = tokio::time::sleep_until(init_deadline), if !acked => {
                    return Exit::Close(4408, "Connection initialisation timeout".into());
                }
                _ = auth::until(expiry), if expiry.is_some() => {
                    return Exit::Close(TOKEN_EXPIRED_CODE, TOKEN_EXPIRED_REASON.into());
                }
                _ = async { keepalive.as_mut().expect("guarded").tick().await }, if keepalive.is_some() && acked => {
                    if let Err(e) = self.send(ServerMessage::KeepAlive).await { return e; }
                }
            }
        }
    }

    /// A message we cannot use: graphql-transport-ws closes with 4400; the legacy protocol
    /// answers `connection_error` and keeps the socket open.
    async fn refuse(&mut self, reason: &str) -> Result<(), Exit> {
        match self.protocol {
            Protocol::TransportWs => Err(Exit::Close(4400, reason.to_owned())),
            Protocol::LegacyWs => {
                self.send(ServerMessage::ConnectionError {
                    message: reason.to_owned(),
                })
                .await
            }
        }
    }

    async fn handle(&mut self, msg: ClientMessage) -> Result<(), Exit> {
        match msg {
            ClientMessage::ConnectionInit { payload } => self.init(payload).await,
            ClientMessage::Ping { payload } => self.send(ServerMessage::Pong { payload }).await,
            ClientMessage::Pong => Ok(()),
            ClientMessage::Terminate => Err(Exit::Close(1000, "terminated by the client".into())),
            ClientMessage::Complete { id } => {
                // Nothing more goes out for this id; completing an unknown id is ignored.
                let known = self.active.remove(&id).is_some();
                self.streams.remove(&id);
                if known && self.protocol == Protocol::LegacyWs {
                    self.send(ServerMessage::Complete { id }).await?;
                }
                Ok(())
            }
            ClientMessage::Subscribe { id, operation } => self.subscribe(id, operation).await,
        }
    }

    async fn init(&mut self, payload: Option<serde_json::Map<String, Value>>) -> Result<(), Exit> {
        if self.init_received {
            return Err(Exit::Close(4429, "Too many initialisation requests".into()));
        }
        self.init_received = true;
        let from_payload = payload.as_ref().and_then(codec::init_authorization);
        let auth = match from_payload {
            None => self.header_auth.clone(),
            Some(Err(())) => {
                return self
                    .init_refused(
                        "Forbidden: Authorization must be a string 'Bearer <access token>'",
                    )
                    .await;
            }
            Some(Ok(value)) => match auth::authenticate(&self.state.tokens, value) {
                Ok(a) => Some(a),
                Err(e) => return self.init_refused(&format!("Forbidden: {e}")).await,
            },
        };
        self.auth = Some(auth);
        self.send(ServerMessage::ConnectionAck).await?;
        if self.protocol == Protocol::LegacyWs && self.state.config.keepalive.is_some() {
            // Legacy clients start watching keep-alives after the first one.
            self.send(ServerMessage::KeepAlive).await?;
        }
        Ok(())
    }

    async fn init_refused(&mut self, reason: &str) -> Result<(), Exit> {
        if self.protocol == Protocol::LegacyWs {
            self.send(ServerMessage::ConnectionError {
                message: reason.to_owned(),
            })
            .await?;
        }
        Err(Exit::Close(4403, reason.to_owned()))
    }

    async fn subscribe(&mut self, id: String, op: Operation) -> Result<(), Exit> {
        if self.auth.is_none() {
            return Err(Exit::Close(4401, "Unauthorized".into()));
        }
        if self.active.contains_key(&id) {
            return Err(Exit::Close(
                4409,
                format!("Subscriber for {id} already exists"),
            ));
        }
        if self.active.len() >= self.state.config.max_subscriptions {
            let message = format!(
                "too many operations on this socket (at most {})",
                self.state.config.max_subscriptions
            );
            let errors = serde_json::json!([{ "message": message }]);
            return self.send(ServerMessage::Error { id, errors }).await;
        }
        self.next_serial += 1;
        let serial = self.next_serial;
        self.active.insert(id.clone(), serial);
        let mut request = async_graphql::Request::new(op.query.clone())
            .variables(async_graphql::Variables::from_json(op.variables))
            .data(RequestAuth(self.caller()));
        if let Some(name) = &op.operation_name {
            request = request.operation_name(name.clone());
        }
        let schema = self.state.schema.clone();
        if !matches!(
            operation_kind(&op.query, op.operation_name.as_deref()),
            Ok(OperationKind::Subscription)
        ) {
            // A query or a mutation: one result, then the end.
            self.pending.push(
                async move {
                    let response = schema.execute(request).await;
                    let result = if is_request_error(&response) {
                        Err(response)
                    } else {
                        Ok(stream::once(async move { response }).boxed())
                    };
                    Setup { id, serial, result }
                }
                .boxed(),
            );
            return Ok(());
        }
        let (ready, ready_rx) = SubscriptionReady::new();
        let stream = schema.execute_stream(request.data(ready));
        self.pending.push(
            async move {
                let result =
                    match tokio::time::timeout(SUBSCRIBE_SETUP_TIMEOUT, setup(stream, ready_rx))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(GqlResponse::from_errors(vec![
                            async_graphql::ServerError::new(
                                "the subscription could not be registered in time; try again",
                                None,
                            ),
                        ])),
                    };
                Setup { id, serial, result }
            }
            .boxed(),
        );
        Ok(())
    }

    async fn setup_finished(&mut self, setup: Setup) -> Result<(), Exit> {
        if self.active.get(&setup.id) != Some(&setup.serial) {
            return Ok(()); // completed by the client meanwhile
        }
        match setup.result {
            Ok(stream) => {
                let items = stream.map(Some).chain(stream::once(async { None })).boxed();
                self.streams.insert(setup.id, items);
                Ok(())
            }
            Err(response) => {
                // Refused before it started (validation, authorization): `error`, and the
                // operation is over; the socket stays open.
                self.active.remove(&setup.id);
                let errors = serde_json::to_value(&response.errors).unwrap_or_default();
                self.send(ServerMessage::Error {
                    id: setup.id,
                    errors,
                })
                .await
            }
        }
    }

    async fn emit(&mut self, id: String, item: Item) -> Result<(), Exit> {
        match item {
            Some(response) => {
                let slow = is_slow_subscriber(&response);
                self.send(ServerMessage::Next {
                    id,
                    payload: response_json(response),
                })
                .await?;
                if slow {
                    return Err(Exit::Close(
                        SLOW_CLIENT_CODE,
                        "client too slow: a subscription's queue filled".into(),
                    ));
                }
                Ok(())
            }
            None => {
                self.active.remove(&id);
                self.send(ServerMessage::Complete { id }).await
            }
        }
    }
}

/// A result without data whose errors all come before execution (parse, validation, unknown
/// operation): graphql-transport-ws reports those with `error`, not `next`.
fn is_request_error(r: &GqlResponse) -> bool {
    matches!(r.data, async_graphql::Value::Null)
        && !r.errors.is_empty()
        && r.errors.iter().all(|e| e.path.is_empty())
}
