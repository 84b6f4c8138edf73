// graphql-ws (graphql-transport-ws protocol), unmodified: createClient on the GraphQL path,
// token in connectionParams. The protocol has no per-subscription ack: the driver starts once
// the connection is acknowledged and keeps producing events, so none is needed.
import WebSocket from "ws";
import { createClient } from "graphql-ws";
import { Tracker, drive, waitFor, SUBSCRIPTION, WS_BASE, TOKEN } from "./lib.mjs";

const tracker = new Tracker("graphql-ws createClient (graphql-transport-ws)");
const client = createClient({
  url: `${WS_BASE}/services/ekko/v2/graphql`,
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: `Bearer ${TOKEN}` },
  retryAttempts: 0,
  on: { connected: () => { tracker.acked = true; } },
});
const unsubscribe = client.subscribe(
  { query: SUBSCRIPTION },
  {
    next: (result) => tracker.see(result),
    error: (e) => tracker.problem(`error: ${e?.message ?? (e?.code ? `close ${e.code} ${e.reason}` : JSON.stringify(e))}`),
    complete: () => { if (!tracker.done()) tracker.problem("completed before all kinds arrived"); },
  },
);

if (await waitFor(() => tracker.acked || tracker.problems.length > 0)) await drive(tracker);
const code = tracker.report();
unsubscribe();
await client.dispose();
process.exit(code);
