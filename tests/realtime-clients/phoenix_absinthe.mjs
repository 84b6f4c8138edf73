// phoenix (the official client, serializer V2) + @absinthe/socket, unmodified: create / send /
// observe on the Absinthe control channel at /services/ekko/v2/socket, token as a parameter.
import WebSocket from "ws";
import { Socket } from "phoenix";
import * as AbsintheSocket from "@absinthe/socket";
import { Tracker, drive, waitFor, SUBSCRIPTION, WS_BASE, TOKEN } from "./lib.mjs";

globalThis.WebSocket = WebSocket; // what a browser has; phoenix picks it up

const tracker = new Tracker("phoenix (V2) + @absinthe/socket");
const phoenixSocket = new Socket(`${WS_BASE}/services/ekko/v2/socket`, { params: { token: TOKEN } });
phoenixSocket.onError((e) => tracker.problem(`socket error: ${e?.message ?? e}`));
const absintheSocket = AbsintheSocket.create(phoenixSocket);
const notifier = AbsintheSocket.send(absintheSocket, { operation: SUBSCRIPTION, variables: {} });
AbsintheSocket.observe(absintheSocket, notifier, {
  onStart: () => { tracker.acked = true; },
  onResult: (result) => tracker.see(result),
  onError: (e) => tracker.problem(`onError: ${e?.message ?? JSON.stringify(e)}`),
  onAbort: (e) => tracker.problem(`onAbort: ${e?.message ?? JSON.stringify(e)}`),
});

if (await waitFor(() => tracker.acked || tracker.problems.length > 0)) await drive(tracker);
const code = tracker.report();
AbsintheSocket.cancel(absintheSocket, notifier);
phoenixSocket.disconnect();
process.exit(code);
