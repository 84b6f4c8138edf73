// subscriptions-transport-ws (the legacy `graphql-ws` subprotocol), unmodified: a
// SubscriptionClient on the GraphQL path, token in connectionParams. No per-operation ack in
// this protocol either: the driver starts once the connection is acknowledged.
import WebSocket from "ws";
import { SubscriptionClient } from "subscriptions-transport-ws";
import { Tracker, drive, waitFor, SUBSCRIPTION, WS_BASE, TOKEN } from "./lib.mjs";

const tracker = new Tracker("subscriptions-transport-ws SubscriptionClient (legacy graphql-ws)");
const client = new SubscriptionClient(
  `${WS_BASE}/services/ekko/v2/graphql`,
  {
    reconnect: false,
    connectionParams: { Authorization: `Bearer ${TOKEN}` },
    // Called with the payload of a `connection_error` (a refused token), or nothing on ack.
    connectionCallback: (error) => { if (error) tracker.problem(`connection_error: ${JSON.stringify(error).slice(0, 300)}`); },
  },
  WebSocket,
);
client.onConnected(() => { tracker.acked = true; });
client.onError((e) => tracker.problem(`socket error: ${e?.message ?? JSON.stringify(e)}`));
const subscription = client.request({ query: SUBSCRIPTION }).subscribe({
  next: (result) => tracker.see(result),
  error: (e) => tracker.problem(`error: ${e?.message ?? JSON.stringify(e)}`),
  complete: () => { if (!tracker.done()) tracker.problem("completed before all kinds arrived"); },
});

if (await waitFor(() => tracker.acked || tracker.problems.length > 0)) await drive(tracker);
const code = tracker.report();
subscription.unsubscribe();
client.close();
process.exit(code);
