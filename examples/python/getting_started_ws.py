# The getting-started guide's raw `websockets` subscription client ("GraphQL Subscription"),
# as written, with only API_ENDPOINT and the device id changed -- plus an optional
# `--max N` flag (exit after N subscription:data messages) so CI can run it.
#   env:  MUNIC_AUTH="Bearer <access_token>"; EKKO_BASE (default http://127.0.0.1:4000)
import argparse
from os import environ
import asyncio
import websockets
import json

parser = argparse.ArgumentParser()
parser.add_argument("--max", type=int, default=None, help="exit after N subscription:data messages")
args = parser.parse_args()
_base = environ.get("EKKO_BASE", "http://127.0.0.1:4000")

# Base websocket url
API_ENDPOINT = ("ws" + _base[len("http"):] if _base.startswith("http") else _base) + "/services/ekko/v2/"
# JWT token with "Bearer " prefix
API_AUTH=environ['MUNIC_AUTH']

# Phoenix channel join payload
SUBSCRIPTION_PAYLOAD = {
    "topic": "__absinthe__:control",
    "event": "phx_join",
    "payload": {},
    "ref": "1"
}

# Graphql subscription query
QUERY = """
subscription {
    deviceNotifications(deviceIds: ["359881234567899"]) {
      deviceId
        ... on Track {
            fields {
                name,
                coordinates { lat, lng, time }
            }
        }
    }
}
"""

# GraphQL subscription payload for Absinthe
GRAPHQL_SUBSCRIPTION_MESSAGE = {
    "topic": "__absinthe__:control",
    "event": "doc",
    "payload": {
        "query": QUERY,
        "variables": {}  # Add any variables if needed
    },
    "ref": "2"
}


async def handle_subscription():
    url = f"{API_ENDPOINT}socket/websocket?Authorization={API_AUTH}".replace(' ', '+')
    received = 0
    async with websockets.connect(url) as ws:

        # Join the GraphQL topic for Absinthe
        await ws.send(json.dumps(SUBSCRIPTION_PAYLOAD))
        response = await ws.recv()
        print(f"Join response: {response}")

        # Send the GraphQL subscription tailored for Absinthe
        await ws.send(json.dumps(GRAPHQL_SUBSCRIPTION_MESSAGE))

        while True:
            message = await ws.recv()
            message_data = json.loads(message)

            # Handle the Phoenix heartbeat (ping/pong mechanism)
            if message_data["event"] == "phx_ping":
                print("pong", message_data["ref"])
                await ws.send(json.dumps({
                    "topic": "phoenix",
                    "event": "phx_pong",
                    "payload": {},
                    "ref": message_data["ref"]
                }))
            else:
                # Handle incoming GraphQL data here
                print(message_data, flush=True)
                if message_data["event"] == "subscription:data":
                    received += 1
                    if args.max is not None and received >= args.max:
                        return


# Run the asynchronous function
asyncio.get_event_loop().run_until_complete(handle_subscription())
