// The README's JavaScript example (Node >= 18): a token, a query, then live tracks over
// Phoenix channels. `npm ci` here installs the pinned `phoenix` and `ws`.
//   env: EKKO_BASE (default http://127.0.0.1:4000); EKKO_EMAIL, EKKO_PASSWORD, EKKO_IMEI
// Exits 0 after the first subscription:data message, 1 if none arrives within 15 s.
import { Socket } from "phoenix";
import WebSocket from "ws";

const base = process.env.EKKO_BASE ?? "http://127.0.0.1:4000";
const username = process.env.EKKO_EMAIL ?? "john.doe@example.com";
const password = process.env.EKKO_PASSWORD ?? "123456789";
const imei = process.env.EKKO_IMEI ?? "359881234567899";
setTimeout(() => {
  console.error("no subscription:data within 15 s");
  process.exit(1);
}, 15_000);

const tokenResponse = await fetch(`${base}/oauth/token`, {
  method: "POST",
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify({ grant_type: "password", username, password }),
});
const { access_token } = await tokenResponse.json();

const query = await fetch(`${base}/services/ekko/v2/graphql`, {
  method: "POST",
  headers: { "Content-Type": "application/json", Authorization: `Bearer ${access_token}` },
  body: JSON.stringify({ query: '{ account(id: "me") { full_name email } }' }),
});
console.log(JSON.stringify(await query.json()));

// Phoenix channels, serializer V2 (what phoenix.js speaks), token as a query parameter.
const socket = new Socket(`${base.replace(/^http/, "ws")}/services/ekko/v2/socket`, {
  transport: WebSocket,
  params: { token: access_token },
});
socket.connect();
const channel = socket.channel("__absinthe__:control", {});
socket.onMessage(({ event, payload }) => {
  if (event === "subscription:data") {
    console.log(JSON.stringify(payload.result.data));
    socket.disconnect(() => process.exit(0));
    setTimeout(() => process.exit(0), 1_000); // in case the close handshake stalls
  }
});
channel.join().receive("ok", () => {
  channel
    .push("doc", {
      query: `subscription { deviceNotifications(deviceIds: ["${imei}"]) { deviceId ... on Track { fields { name value } } } }`,
      variables: {},
    })
    .receive("ok", ({ subscriptionId }) => console.log("subscribed", subscriptionId))
    .receive("error", (e) => console.error("refused", JSON.stringify(e)));
});
