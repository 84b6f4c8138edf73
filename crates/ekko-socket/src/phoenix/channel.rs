//! The Absinthe control channel on one socket: what each inbound Phoenix message means and
//! the replies it gets, in order. The connection loop owns one [`Channel`] and does the I/O.
//!
//! Rules kept here (see shared/spec/protocols.md §1.5, §2, §3 and §6):
//! - `heartbeat` (and `phx_ping`/`phx_pong`/`ping`) on `phoenix` is answered at once with the
//!   same ref, joined or not. The server never sends keepalive events of its own.
//! - Only `__absinthe__:control` can be joined. Subscription-id topics are never joined: data
//!   goes to them directly.
//! - Every `doc` subscription gets its own id (`__absinthe__:doc:<ctx>:<HASH>`, unique per
//!   doc); `unsubscribe` removes exactly that one and is answered at once.
//! - A subscription's reply is sent only once it is registered on the bus, and always before
//!   its first `subscription:data`; nothing is sent for it after its `unsubscribe` reply.
//! - Messages carrying a stale `join_ref` are dropped, as Phoenix does.

use std::collections::HashSet;
use std::time::Duration;

use async_graphql::Response;
use ekko_api::{
    EkkoSchema, OperationKind, RequestAuth, SubscriptionReady, check_subscription_shape,
    operation_kind,
};
use ekko_core::Caller;
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, FuturesUnordered};
use futures::{FutureExt, StreamExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_stream::StreamMap;

use super::frame::Message;

pub const CONTROL_TOPIC: &str = "__absinthe__:control";
const DOC_TOPIC_PREFIX: &str = "__absinthe__:doc:";
/// How long a subscription may take to be registered before the doc is answered with an error.
const SUBSCRIBE_SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A subscription whose setup finished (registered, or refused).
pub struct SetupOutcome {
    id: String,
    request: Message,
    join_ref: Value,
    generation: u64,
    result: Result<BoxStream<'static, Response>, Response>,
}

pub struct Channel {
    schema: EkkoSchema,
    caller: Option<Caller>,
    /// `Some(join_ref)` while `__absinthe__:control` is joined.
    joined: Option<Value>,
    /// Bumped on every join/leave: setups started under an older join are discarded.
    generation: u64,
    context_id: i64,
    docs: u64,
    max_subscriptions: usize,
    /// Live subscriptions, by id. Removing one here is synchronous with the loop, which is
    /// what guarantees "nothing after the unsubscribe reply".
    pub subscriptions: StreamMap<String, BoxStream<'static, Response>>,
    /// Subscriptions being registered.
    pub pending: FuturesUnordered<BoxFuture<'static, SetupOutcome>>,
    pending_ids: HashSet<String>,
}

fn error_reason(req: &Message, join_ref: Value, reason: impl Into<String>) -> Message {
    Message::reply_to(req, join_ref, "error", json!({ "reason": reason.into() }))
}

impl Channel {
    pub fn new(schema: EkkoSchema, caller: Option<Caller>, max_subscriptions: usize) -> Self {
        Channel {
            schema,
            caller,
            joined: None,
            generation: 0,
            context_id: rand_context_id(),
            docs: 0,
            max_subscriptions,
            subscriptions: StreamMap::new(),
            pending: FuturesUnordered::new(),
            pending_ids: HashSet::new(),
        }
    }

    fn drop_all_subscriptions(&mut self) {
        self.subscriptions.clear();
        self.pending = FuturesUnordered::new();
        self.pending_ids.clear();
        self.generation += 1;
    }

    /// Handles one inbound message; returns what to send, in order.
    pub async fn handle(&mut self, msg: Message) -> Vec<Message> {
        if msg.topic == "phoenix" {
            return match msg.event.as_str() {
                "heartbeat" | "phx_ping" | "phx_pong" | "ping" => {
                    vec![Message::reply_to(&msg, Value::Null, "ok", json!({}))]
                }
                _ => vec![error_reason(&msg, Value::Null, "unmatched topic")],
            };
        }
        if msg.event == "phx_join" {
            return self.join(msg);
        }
        let joined_here = msg.topic == CONTROL_TOPIC && self.joined.is_some();
        if msg.event == "phx_leave" {
            if !joined_here {
                return vec![Message::reply_to(&msg, Value::Null, "ok", json!({}))];
            }
            let join_ref = self.joined.take().unwrap_or_default();
            self.drop_all_subscriptions();
            let close = Message {
                join_ref: join_ref.clone(),
                ref_: join_ref.clone(),
                ..Message::push(CONTROL_TOPIC, "phx_close", json!({}))
            };
            return vec![Message::reply_to(&msg, join_ref, "ok", json!({})), close];
        }
        if !joined_here {
            return vec![error_reason(&msg, Value::Null, "unmatched topic")];
        }
        let join_ref = self.joined.clone().unwrap_or_default();
        // Phoenix drops messages for an older join of this topic (a null join_ref is a V1 client).
        if !msg.join_ref.is_null() && msg.join_ref != join_ref {
            return vec![];
        }
        match msg.event.as_str() {
            "doc" => self.doc(msg, join_ref).await,
            "unsubscribe" => self.unsubscribe(msg, join_ref),
            other => {
                let reason =
                    format!("unknown event '{other}' on {CONTROL_TOPIC}; use doc or unsubscribe");
                vec![error_reason(&msg, join_ref, reason)]
            }
        }
    }

    fn join(&mut self, msg: Message) -> Vec<Message> {
        if msg.topic != CONTROL_TOPIC {
            let reason = if msg.topic.starts_with(DOC_TOPIC_PREFIX) {
                "subscription topics are not joined: their data arrives on the socket without a join"
            } else {
                "unmatched topic"
            };
            return vec![error_reason(&msg, Value::Null, reason)];
        }
        // V2 clients name the join with join_ref; V1 clients send none (null), as in Phoenix.
        let new_ref = msg.join_ref.clone();
        let mut out = Vec::new();
        if let Some(old) = self.joined.take() {
            // A duplicate join replaces the channel: close the old one first, as Phoenix does.
            self.drop_all_subscriptions();
            out.push(Message {
                join_ref: old.clone(),
                ref_: old,
                ..Message::push(CONTROL_TOPIC, "phx_close", json!({}))
            });
        }
        self.generation += 1;
        self.joined = Some(new_ref.clone());
        out.push(Message::reply_to(&msg, new_ref, "ok", json!({})));
        out
    }

    async fn doc(&mut self, msg: Message, join_ref: Value) -> Vec<Message> {
        let Some(payload) = msg.payload.as_object() else {
            return vec![error_reason(
                &msg,
                join_ref,
                "doc payload must be an object {query, variables}",
            )];
        };
        let query = payload
            .get("query")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let variables = match payload.get("variables") {
            None | Some(Value::Null) => json!({}),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => {
                return vec![Message::reply_to(
                    &msg,
                    join_ref,
                    "error",
                    json!({"error": "Could not parse variables as map"}),
                )];
            }
        };
        let operation_name = payload
            .get("operationName")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut request = async_graphql::Request::new(query.clone())
            .variables(async_graphql::Variables::from_json(variables.clone()))
            .data(RequestAuth(self.caller.clone()));
        if let Some(name) = &operation_name {
            request = request.operation_name(name.clone());
        }
        match operation_kind(&query, operation_name.as_deref()) {
            Ok(OperationKind::Subscription) => {}
            // Queries, mutations, and documents that do not parse (the executor reports those).
            _ => {
                let response = self.schema.execute(request).await;
                return vec![result_reply(&msg, join_ref, response)];
            }
        }
        if let Err(message) = check_subscription_shape(&query, operation_name.as_deref()) {
            return vec![Message::reply_to(
                &msg,
                join_ref,
                "error",
                json!({ "errors": [{ "message": message }] }),
            )];
        }
        if self.subscriptions.len() + self.pending_ids.len() >= self.max_subscriptions {
            let reason = format!(
                "too many subscriptions on this socket (at most {})",
                self.max_subscriptions
            );
            return vec![error_reason(&msg, join_ref, reason)];
        }
        self.docs += 1;
        let id = format!(
            "{DOC_TOPIC_PREFIX}{}:{}",
            self.context_id,
            doc_hash(&query, &variables, self.docs)
        );
        let (ready, ready_rx) = SubscriptionReady::new();
        let stream = self.schema.execute_stream(request.data(ready));
        self.pending_ids.insert(id.clone());
        let generation = self.generation;
        self.pending.push(
            async move {
                let result =
                    match tokio::time::timeout(SUBSCRIBE_SETUP_TIMEOUT, setup(stream, ready_rx))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(Response::from_errors(vec![
                            async_graphql::ServerError::new(
                                "the subscription could not be registered in time; try again",
                                None,
                            ),
                        ])),
                    };
                SetupOutcome {
                    id,
                    request: msg,
                    join_ref,
                    generation,
                    result,
                }
            }
            .boxed(),
        );
        vec![]
    }

    /// A subscription finished registering: answer its doc, then start delivering.
    pub fn setup_finished(&mut self, outcome: SetupOutcome) -> Vec<Message> {
        self.pending_ids.remove(&outcome.id);
        if outcome.generation != self.generation {
            return vec![]; // the channel was left or rejoined meanwhile
        }
        match outcome.result {
            Ok(stream) => {
                let reply = Message::reply_to(
                    &outcome.request,
                    outcome.join_ref,
                    "ok",
                    json!({ "subscriptionId": outcome.id }),
                );
                self.subscriptions.insert(outcome.id, stream);
                vec![reply]
            }
            Err(response) => vec![result_reply(&outcome.request, outcome.join_ref, response)],
        }
    }

    fn unsubscribe(&mut self, msg: Message, join_ref: Value) -> Vec<Message> {
        let Some(id) = msg
            .payload
            .get("subscriptionId")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            return vec![error_reason(
                &msg,
                join_ref,
                "unsubscribe needs {\"subscriptionId\": ...}",
            )];
        };
        // Absinthe answers ok even for an id it does not know.
        self.subscriptions.remove(&id);
        vec![Message::reply_to(
            &msg,
            join_ref,
            "ok",
            json!({ "subscriptionId": id }),
        )]
    }

    /// The `subscription:data` push for one result of subscription `id`.
    pub fn data_push(id: &str, response: Response) -> Message {
        Message::push(
            id,
            "subscription:data",
            json!({ "result": response_json(response), "subscriptionId": id }),
        )
    }
}

/// Drives a subscription stream until it is registered on the bus (`ready`) or it yields
/// first (an error: validation, authorization). An item that races the ready signal is kept.
pub(crate) async fn setup(
    stream: impl futures::Stream<Item = Response> + Send + 'static,
    mut ready: tokio::sync::oneshot::Receiver<()>,
) -> Result<BoxStream<'static, Response>, Response> {
    let mut stream = stream.boxed();
    enum First {
        Ready(bool),
        Item(Option<Box<Response>>),
    }
    let first = tokio::select! {
        biased;
        r = &mut ready => First::Ready(r.is_ok()),
        item = stream.next() => First::Item(item.map(Box::new)),
    };
    match first {
        First::Ready(true) => Ok(stream),
        First::Item(item) if ready.try_recv().is_ok() => {
            Ok(stream::iter(item.map(|b| *b)).chain(stream).boxed())
        }
        First::Ready(false) => Err(stream.next().await.unwrap_or_else(ended_early)),
        First::Item(item) => Err(item.map(|b| *b).unwrap_or_else(ended_early)),
    }
}

fn ended_early() -> Response {
    Response::from_errors(vec![async_graphql::ServerError::new(
        "the subscription ended before it started",
        None,
    )])
}

pub(crate) fn response_json(response: Response) -> Value {
    // Only data / errors / extensions: gql refuses any other key in a result.
    serde_json::to_value(&response)
        .unwrap_or_else(|_| json!({"errors": [{"message": "could not encode the result"}]}))
}

/// Absinthe's rule: a result with data is `ok` (even with field errors); without data, `error`.
fn result_reply(req: &Message, join_ref: Value, response: Response) -> Message {
    let has_data = !matches!(response.data, async_graphql::Value::Null);
    if !has_data && !response.errors.is_empty() {
        let errors = serde_json::to_value(&response.errors).unwrap_or_default();
        return Message::reply_to(req, join_ref, "error", json!({ "errors": errors }));
    }
    Message::reply_to(req, join_ref, "ok", response_json(response))
}

fn doc_hash(query: &str, variables: &Value, n: u64) -> String {
    let mut h = Sha256::new();
    h.update(query.as_bytes());
    h.update(variables.to_string().as_bytes());
    h.update(n.to_be_bytes());
    h.finalize().iter().map(|b| format!("{b:02X}")).collect()
}

fn rand_context_id() -> i64 {
    // Like Erlang's unique_integer: opaque, often negative; unique enough per socket.
    let u = uuid::Uuid::new_v4().as_u128();
    (u as i64) >> 4
}
