// graphql-sse, unmodified: createClient in distinct connections mode (the default) on the
// GraphQL path with an Authorization header; Node's fetch. The driver starts once the event
// stream is open (the `connected` event).
import { createClient } from "graphql-sse";
import { Tracker, drive, waitFor, SUBSCRIPTION, BASE, TOKEN } from "./lib.mjs";

const tracker = new Tracker("graphql-sse createClient (distinct connections)");
const client = createClient({
  url: `${BASE}/services/ekko/v2/graphql`,
  headers: { Authorization: `Bearer ${TOKEN}` },
  retryAttempts: 0,
});
const unsubscribe = client.subscribe(
  { query: SUBSCRIPTION },
  {
    next: (result) => tracker.see(result),
    error: (e) => tracker.problem(`error: ${e?.message ?? JSON.stringify(e)}`),
    complete: () => { if (!tracker.done()) tracker.problem("completed before all kinds arrived"); },
  },
  { connected: () => { tracker.acked = true; } },
);

if (await waitFor(() => tracker.acked || tracker.problems.length > 0)) await drive(tracker);
const code = tracker.report();
unsubscribe();
client.dispose();
process.exit(code);
